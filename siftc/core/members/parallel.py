"""Sparse Parallel: sum over k sparse copies of the layer, each with its own norm (and ReLU).

docs/method.md: k = round(1/(1-s)) branches (half-up: s=0.6 -> 3). Policy ``parallel_form``:
- ``cifar`` (default; the authors' CIFAR code): sum_j N_j(W_j x), the branch norms replacing the
  norm that follows the layer in the model (substitute removes it where the layer's output feeds
  that norm alone); the model's own activation follows the sum;
- ``imagenet`` (the paper's text and the authors' ImageNet code): sum_j act(N_j(W_j x)), the
  branch norms replacing the layer's norm. Not the default: on CIFAR ResNet-18 (5k images, 200
  steps, lr 0.05 cosine, RigL, s=0.75, 3 seeds) it reached 14.2% +- 5.4 against 41.4% +- 0.6 for
  the CIFAR form and 45.8% for dense (docs/results.md, "Sparse Parallel's form"). Before a
  residual add, a ReLU per branch makes each block's update non-negative and about k branches
  large;
- ``siftc`` (siftc's form before 2026-12): sum_j act(N_j(W_j x)) with the model's norm kept after
  the sum.

``combine=mean`` divides the sum by k. Where a norm follows (``siftc``) the two are the same
function up to the norm's eps, since a norm is scale-invariant. Where nothing normalises the
sum (an MLP's head, a transformer's residual stream), summing k ReLU(norm(.)) outputs makes the
activations about k times larger than the layer being replaced. On the MNIST MLP at s=0.9 (k=10,
SGD lr 0.05), training diverged on some seeds: 43.4% +- 32.1 over 3 seeds with RigL, against
93.7% +- 0.2 with ``combine=mean`` (models_zoo/RESULTS.md; the ``siftc`` form).
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

    def __init__(self, original: nn.Module, k: int, combine: str = "sum", out_shape=None, form: str = "cifar"):
        flat = one_by_one(original, out_shape)
        super().__init__(original, f"k={k} branches" + (", mean" if combine == "mean" else "")
                         + (", no ReLU per branch" if form == "cifar" else "")
                         + (f", {NO_NORM_NOTE}" if flat else ""))
        self.scale = 1.0 / k if combine == "mean" else 1.0
        self.act = form != "cifar"
        # substitute removes the model's norm after the layer (the branch norms replace it)
        self.replaces_norm = form in ("imagenet", "cifar") and not flat
        out = original.out_features if isinstance(original, nn.Linear) else original.out_channels
        self.branches = nn.ModuleList(new_like(original, sparse=True) for _ in range(k))
        self.norms = nn.ModuleList(norm_for(original, out, out_shape) for _ in range(k))

    def forward(self, x):
        out = None
        for layer, norm in zip(self.branches, self.norms):
            y = norm(layer(x))
            y = F.relu(y) if self.act else y
            out = y if out is None else out + y
        return out * self.scale if self.scale != 1.0 else out

    @classmethod
    def build(cls, original, policy, out_shape=None):
        return cls(original, parallel_branches(policy.sparsity), policy.combine, out_shape, policy.parallel_form)
