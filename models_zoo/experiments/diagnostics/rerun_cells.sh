#!/usr/bin/env bash
# Re-runs single study cells with the command RESULTS.md gives (siftc train ... --equal-flops) and
# appends their JSON lines, machine included, to models_zoo/results/reruns.jsonl. Compare each
# line's value with the same cell in the grid's results file: bit-identical on the machine that ran
# the grid, a drift in the last digits on another CPU (RESULTS.md, "Reproducing a cell").
#   SIFTC_DATA=../shared/data bash models_zoo/experiments/diagnostics/rerun_cells.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
out=models_zoo/results/reruns.jsonl
run() { siftc train "$@" --equal-flops --no-progress --out "$out" >/dev/null 2>&1; tail -1 "$out"; }
run mnist_mlp --policy dense --steps 600 --seed 0                                # results/mnist.jsonl
run mnist_mlp --policy wide:0.75,stem=sparse,dst=rigl --steps 600 --seed 0
run mnist_cnn --policy dense --steps 300 --seed 0 --bn-recalibrate 10             # results/mnist_cnn_bn.jsonl
run mnist_cnn --policy wide:0.75,dst=rigl --steps 300 --seed 0 --bn-recalibrate 10
run mnist_cnn --policy doped:0.5 --steps 300 --seed 2 --bn-recalibrate 10         # run on this session's machine
run shakespeare_gpt --policy dense --steps 300 --seed 0                          # results/shakespeare.jsonl
run shakespeare_gpt --policy wide:0.75,dst=rigl --steps 300 --seed 0
run shakespeare_gpt --policy wide:0.75 --steps 300 --seed 0                      # run on this session's machine
