"""Sparse Parallel: sum over k sparse copies of the layer, each with its own norm and ReLU.

docs/method.md: k = round(1/(1-s)) branches; ImageNet form act(sum_j act(BN_j(conv_j x))), where the
outer norm/act are the model's own layers that follow. Rounding is half-up (s=0.6 -> 3).

``combine=mean`` divides the sum by k. Where a norm follows (the ImageNet form) the two are the
same function up to the norm's eps, since a norm is scale-invariant. Where nothing normalises the
sum (an MLP's head, a transformer's residual stream), summing k ReLU(norm(.)) outputs makes the
activations about k times larger than the layer being replaced. On the MNIST MLP at s=0.9 (k=10,
SGD lr 0.05), training diverged on some seeds: 43.4% +- 32.1 over 3 seeds with RigL, against
93.7% +- 0.2 with ``combine=mean`` (models_zoo/RESULTS.md).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from siftc.core.members.base import NO_NORM_NOTE, MemberLayer, new_like, norm_for, one_by_one


def parallel_branches(sparsity: float) -> int:
    return max(1, math.floor(1.0 / (1.0 - sparsity) + 0.5))


class ParallelLayer(MemberLayer):
    member = "parallel"

    def __init__(self, original: nn.Module, k: int, combine: str = "sum", out_shape=None):
        super().__init__(original, f"k={k} branches" + (", mean" if combine == "mean" else "")
                         + (f", {NO_NORM_NOTE}" if one_by_one(original, out_shape) else ""))
        self.scale = 1.0 / k if combine == "mean" else 1.0
        out = original.out_features if isinstance(original, nn.Linear) else original.out_channels
        self.branches = nn.ModuleList(new_like(original, sparse=True) for _ in range(k))
        self.norms = nn.ModuleList(norm_for(original, out, out_shape) for _ in range(k))

    def forward(self, x):
        out = F.relu(self.norms[0](self.branches[0](x)))
        for layer, norm in zip(self.branches[1:], self.norms[1:]):
            out = out + F.relu(norm(layer(x)))
        return out * self.scale if self.scale != 1.0 else out

    @classmethod
    def build(cls, original, policy, out_shape=None):
        return cls(original, parallel_branches(policy.sparsity), policy.combine, out_shape)
