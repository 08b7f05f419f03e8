"""Sparse: the static-sparse baseline, one masked copy of the layer at its original shape.

Not iso-FLOP by design: it costs (1-s) of the layer's FLOPs. It is the baseline the paper's
members are compared against at the same nominal sparsity.
"""
from __future__ import annotations

from torch import nn

from siftc.core.members.base import MemberLayer, new_like


class SparseLayer(MemberLayer):
    member = "sparse"

    def __init__(self, original: nn.Module):
        super().__init__(original, "original shape")
        self.W = new_like(original, sparse=True)

    def forward(self, x):
        return self.W(x)

    @classmethod
    def build(cls, original, policy, out_shape=None):
        return cls(original)
