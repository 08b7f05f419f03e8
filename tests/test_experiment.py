"""`siftc experiment`: the CI smoke grid end to end (training, JSON lines, table, plots), resuming,
and spec errors. The full study specs (models_zoo/experiments/*.yaml) run outside CI."""
import json
import shutil
from pathlib import Path

import pytest

import siftc.experiment as ex
from siftc.cli import main

SPECS = Path(__file__).resolve().parents[1] / "models_zoo" / "experiments"


def test_smoke_grid_end_to_end_and_resume(tmp_path, capsys):
    spec = tmp_path / "smoke.yaml"
    shutil.copy(SPECS / "smoke.yaml", spec)
    assert main(["experiment", str(spec), "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(x) for x in (tmp_path / "smoke_results.jsonl").read_text().splitlines()]
    assert [x["member"] for x in lines] == ["dense", "wide"]
    wide = lines[1]
    assert wide["policy"] == "wide:0.75,stem=sparse,dst=rigl,dT=5" and wide["dst"] == "rigl"
    assert 0.0 < wide["value"] <= 1.0 and wide["metric"] == "test_accuracy"
    # equal training FLOPs: same steps (iso-FLOP compile), the ledger within RigL's dense-gradient steps
    assert wide["steps"] == lines[0]["steps"] == 20
    assert 1.0 <= wide["train_flops"] / lines[0]["train_flops"] < 1.1
    summary = tmp_path / "smoke_results"                 # the results file's name without .jsonl
    table = (summary / "summary.md").read_text()
    assert "| mnist_mlp | wide | 0.75 | rigl | test_accuracy |" in table and table in out
    for png in ("mnist_mlp_vs_sparsity.png", "mnist_mlp_vs_flops.png"):
        assert (summary / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable: a second run trains nothing and appends nothing
    assert main(["experiment", str(spec), "--dry-run"]) == 0
    assert "0 cells to run" in capsys.readouterr().out
    assert len((tmp_path / "smoke_results.jsonl").read_text().splitlines()) == 2


def test_study_specs_expand_to_the_issue_grids():
    mnist = ex.cells(ex.load_spec(SPECS / "mnist.yaml"))
    assert len(mnist) == 2 * 3 * (1 + 4 * 3 * 3)           # 2 models x 3 seeds x (dense + 4 members x 3 s x 3 DST)
    cifar = ex.cells(ex.load_spec(SPECS / "cifar.yaml"))
    assert len(cifar) == 3 * (1 + 2 * 3 + 2)                 # shared dense runs counted once
    gpt = ex.cells(ex.load_spec(SPECS / "shakespeare.yaml"))
    assert len(gpt) == 2 * (1 + 2 * 2)


def test_shards_split_the_grid_without_overlap(tmp_path, capsys):
    spec = SPECS / "mnist.yaml"
    keys = {c.key for c in ex.cells(ex.load_spec(spec))}
    empty = tmp_path / "mnist.yaml"          # same grid, empty results file: every cell is to run
    empty.write_text(spec.read_text().replace("results: ../results/mnist.jsonl", "results: none.jsonl"))
    got = []
    for i in range(3):
        assert main(["experiment", str(empty), "--dry-run", "--shard", f"{i}/3"]) == 0
        got.append([x for x in capsys.readouterr().out.splitlines() if "|" in x])
    assert sorted(sum(got, [])) == sorted(keys) and all(abs(len(g) - len(keys) / 3) < 1 for g in got)
    with pytest.raises(ex.SiftcError, match="0 <= I < N"):
        ex.parse_shard("2/2")
    with pytest.raises(ex.SiftcError, match="write I/N"):
        ex.parse_shard("half")


def test_bad_spec_names_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrecipes:\n  - recipe: mnist_mlp\n    stepz: 10\n")
    with pytest.raises(ex.SiftcError, match="needs 'recipe' and 'steps'.*stepz"):
        ex.load_spec(bad)
    with pytest.raises(ex.SiftcError, match="not found"):
        ex.load_spec(tmp_path / "missing.yaml")


def test_summary_mean_and_std_over_seeds():
    lines = [{"recipe": "r", "member": m, "sparsity": s, "dst": d, "metric": "test_accuracy", "value": v,
              "steps": 10, "train_flops": 100} for m, s, d, v in
             [("dense", 0.0, "static", 0.5), ("dense", 0.0, "static", 0.7), ("wide", 0.75, "rigl", 0.8)]]
    rows = ex.summary_rows(lines)
    assert rows[0]["member"] == "dense" and rows[0]["mean"] == pytest.approx(0.6) and rows[0]["n"] == 2
    assert rows[0]["std"] == pytest.approx(0.1414, abs=1e-4) and rows[1]["flops_vs_dense"] == 1.0
