"""Sparse Factorized: V(ReLU(norm(U x))), U: d_in -> d, V: d -> d_out, both sparse.

docs/method.md: d = ceil(kk*f_in*f_out / ((1-s)(kk*f_in + f_out))) (for a linear kk = 1); U carries the
kernel and stride, V is a 1x1 conv; norm + ReLU between U and V.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from siftc.core.members.base import NO_NORM_NOTE, MemberLayer, fan, groups_of, in_size, new_like, norm_for, one_by_one


def factorized_inner_dim(d_in: int, d_out: int, sparsity: float) -> int:
    # Plain float arithmetic, as the reference code does: (1 - 0.9) is 0.09999999999999998, so
    # ceil gives 577 (not 576) for (64, 64) at s=0.9, which is the number docs/method.md's list lists.
    return max(1, math.ceil(d_in * d_out / ((1.0 - sparsity) * (d_in + d_out))))


class FactorizedLayer(MemberLayer):
    member = "factorized"

    def __init__(self, original: nn.Module, d: int, out_shape=None):
        g = groups_of(original)
        super().__init__(original, f"inner d={d}" + (f" ({d // g} per group, {g} groups)" if g > 1 else "")
                         + (f", {NO_NORM_NOTE}" if one_by_one(original, out_shape) else ""))
        self.U = new_like(original, in_size(original), d, bias=False, sparse=True)
        self.norm = norm_for(original, d, out_shape)
        self.V = new_like(original, d, None, kernel=False, sparse=True)

    def forward(self, x):
        return self.V(F.relu(self.norm(self.U(x))))

    @classmethod
    def build(cls, original, policy, out_shape=None):
        d_in, d_out = fan(original)     # per group for a grouped conv (grouped=apply)
        return cls(original, factorized_inner_dim(d_in, d_out, policy.sparsity) * groups_of(original), out_shape)
