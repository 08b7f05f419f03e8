"""Sparse Doped: S x + V(U x), S sparse at the original shape, U and V dense and low rank.

docs/method.md: r = floor(s * d_in*d_out / (d_in + d_out)) (conv: kk*f_in in place of d_in); U carries
the kernel and stride, V is 1x1; nothing between U and V. U and V stay dense (policy
``lowrank=dense``, the paper's text); ``lowrank=sparse`` masks them as S, as the authors' code does,
which leaves the layer far under its FLOP budget (0.75/0.44/0.19 of it at s=.5/.75/.9 on ResNet-18).
When r rounds to 0 the layer is S alone.
"""
from __future__ import annotations

import math

from torch import nn

from siftc.core.members.base import MemberLayer, fan, groups_of, in_size, new_like


def doped_rank(d_in: int, d_out: int, sparsity: float) -> int:
    return math.floor(sparsity * d_in * d_out / (d_in + d_out))


class DopedLayer(MemberLayer):
    member = "doped"

    def __init__(self, original: nn.Module, r: int, lowrank: str = "dense"):
        g = groups_of(original)
        super().__init__(original, f"rank r={r}" + (f" ({r // g} per group, {g} groups)" if g > 1 else "")
                         + (", U and V masked" if lowrank == "sparse" and r > 0 else ""))
        self.S = new_like(original, sparse=True)
        self.rank = r
        if r > 0:
            masked = lowrank == "sparse"
            self.U = new_like(original, in_size(original), r, bias=False, sparse=masked)
            self.V = new_like(original, r, None, kernel=False, bias=False, sparse=masked)

    def forward(self, x):
        if self.rank == 0:
            return self.S(x)
        return self.S(x) + self.V(self.U(x))

    @classmethod
    def build(cls, original, policy, out_shape=None):
        d_in, d_out = fan(original)     # per group for a grouped conv (grouped=apply)
        return cls(original, doped_rank(d_in, d_out, policy.sparsity) * groups_of(original), policy.lowrank)
