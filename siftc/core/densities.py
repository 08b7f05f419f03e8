"""Layer densities: uniform or ERK, for a non-zero budget (nominal) or a FLOP budget (iso=exact).

Both cases solve  sum_l w_l * min(1, eps * raw_l) = T  for eps, with
- raw_l = 1 (uniform) or ERK's sum(shape dims) / numel (docs/method.md, "Layer densities"; Evci et
  al. 2020, RigL, "Erdos-Renyi-Kernel"), and
- w_l = numel_l, T = (1-s) * sum numel (nominal: total non-zeros), or
  w_l = dense FLOPs of layer l, T = budget - FLOPs of everything dense (iso=exact).
Layers whose density would exceed 1 are made dense and eps is re-solved over the rest, which
is the exact procedure of the RigL reference code (no bisection needed: w is linear in eps).
"""
from __future__ import annotations

import math

from siftc.core.errors import IsoFlopError


def erk_raw(shape) -> float:
    return sum(shape) / math.prod(shape)


def solve(weights: dict, raw: dict, target: float) -> dict:
    """Densities d_l = min(1, eps*raw_l) with sum w_l d_l = target. Returns {name: density}."""
    total = sum(weights.values())
    if target >= total:
        return {k: 1.0 for k in weights}
    dense: set = set()
    while True:
        free = [k for k in weights if k not in dense]
        budget = target - sum(weights[k] for k in dense)
        denom = sum(weights[k] * raw[k] for k in free)
        eps = budget / denom
        over = [k for k in free if eps * raw[k] > 1.0]
        if not over:
            return {k: (1.0 if k in dense else eps * raw[k]) for k in weights}
        dense.update(over)


def nominal(shapes: dict, sparsity: float, dist: str) -> dict:
    """Densities whose non-zeros add up to (1 - s) of all sparse weights."""
    raw = {k: (erk_raw(s) if dist == "erk" else 1.0) for k, s in shapes.items()}
    numel = {k: math.prod(s) for k, s in shapes.items()}
    return solve(numel, raw, (1.0 - sparsity) * sum(numel.values()))


def iso_exact(shapes: dict, layer_flops: dict, dense_flops: int, budget: int, dist: str,
              sparsity: float) -> dict:
    """Densities that make dense_flops + sum_l d_l * F_l equal the budget."""
    room = budget - dense_flops
    if room <= 0:
        raise IsoFlopError(
            f"iso-FLOP is unreachable: the parts that stay dense already cost {dense_flops:,} FLOPs, "
            f"{dense_flops / budget:.2f}x the dense budget of {budget:,}. Use iso=nominal to keep the "
            f"nominal sparsity {sparsity} and report the overshoot, or stem=sparse / head=sparse to "
            f"sparsify the dense ends too.")
    raw = {k: (erk_raw(s) if dist == "erk" else 1.0) for k, s in shapes.items()}
    return solve(layer_flops, raw, room)
