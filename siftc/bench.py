"""``siftc bench compile``: compile time next to one eager forward pass, measured in one run.

For each model at batch 1 (zoo default input size): the median time of ``--repeat`` eager
forward passes of the original model (no grad), then the time of one ``siftc.compile`` with
the policy. The process first compiles a tiny model once so one-time imports (FakeTensorMode
pulls in torch._dynamo, ~2 s) are not charged to the first model; that warm-up is printed too.
Target (issue 2): compile < 10 forward passes.
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(args) -> int:
    import models_zoo
    import siftc
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    warm = _time(lambda: siftc.compile(models_zoo.create("mlp"), policy=args.policy,
                                       example_inputs=models_zoo.example_inputs("mlp", 1)))
    print(f"siftc bench compile  policy={args.policy}  torch threads={torch.get_num_threads()}")
    print(f"one-time warm-up (imports, first compile of mlp): {warm:.2f} s")
    print(f"{'model':14s} {'input':>16s} {'eager fwd (s)':>14s} {'compile (s)':>12s} {'compile/fwd':>12s}  target < 10")
    for name in args.models.split(","):
        model = models_zoo.create(name).eval()
        inputs = models_zoo.example_inputs(name, 1)
        with torch.no_grad():
            fwd = statistics.median(_time(lambda: model(*inputs)) for _ in range(args.repeat))
        comp = _time(lambda: siftc.compile(model, policy=args.policy, example_inputs=inputs))
        ratio = comp / fwd
        print(f"{name:14s} {str(tuple(inputs[0].shape)):>16s} {fwd:14.3f} {comp:12.3f} {ratio:12.1f}  "
              f"{'ok' if ratio < 10 else 'MISSED'}")
        del model
    return 0
