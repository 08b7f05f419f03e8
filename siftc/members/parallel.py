"""Sparse Parallel: sum over k sparse copies of the layer, each with its own norm and ReLU.

SPEC.md: k = round(1/(1-s)) branches; ImageNet form act(sum_j act(BN_j(conv_j x))), where the
outer norm/act are the model's own layers that follow. Rounding is half-up (s=0.6 -> 3).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from .base import MemberLayer, mark_sparse, new_like, norm_for


def parallel_branches(sparsity: float) -> int:
    return max(1, math.floor(1.0 / (1.0 - sparsity) + 0.5))


class ParallelLayer(MemberLayer):
    member = "parallel"

    def __init__(self, original: nn.Module, k: int):
        super().__init__(original, f"k={k} branches")
        out = original.weight.shape[0]
        self.branches = nn.ModuleList(mark_sparse(new_like(original)) for _ in range(k))
        self.norms = nn.ModuleList(norm_for(original, out) for _ in range(k))

    def forward(self, x):
        out = F.relu(self.norms[0](self.branches[0](x)))
        for layer, norm in zip(self.branches[1:], self.norms[1:]):
            out = out + F.relu(norm(layer(x)))
        return out

    @classmethod
    def build(cls, original, policy):
        return cls(original, parallel_branches(policy.sparsity))
