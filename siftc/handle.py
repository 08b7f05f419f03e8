"""``gm.siftc``: what a compiled GraphModule remembers about its compile.

It holds the policy, the dense budget, the per-layer records and densities, and the example
inputs, so that the report can be rebuilt at any time (after training too) and so that
compiling the GraphModule again re-runs only what the new target needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from siftc.core.policy import Policy


@dataclass
class SiftcHandle:
    gm: Any
    model_name: str
    policy: Policy
    target: str
    example_inputs: tuple
    budget_flops: int
    budget_by_category: dict
    original_params: int
    output_shapes: Any
    layers: dict = field(default_factory=dict)
    left_dense: dict = field(default_factory=dict)
    densities: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)      # Sparse Wide channel groups (report rows)
    kernels: dict = field(default_factory=dict)     # mode inference: module -> kernel, measured speedup
    mode: str = "train"                             # train | inference
    iso_note: str = ""
    warnings: list = field(default_factory=list)
    pipeline: str = ""
    timings: list = field(default_factory=list)     # (pass, seconds)
    passes: list = field(default_factory=list)      # siftc.recorder records (dump files, HTML viewer)

    def report(self, refresh: bool = True):
        from siftc.reporting import build_report
        return build_report(self.gm, self, refresh=refresh)

    def masks(self) -> dict:
        """{module path: bool mask} of every masked weight."""
        return {n: m.weight_mask for n, m in self.gm.named_modules()
                if isinstance(getattr(m, "weight_mask", None), torch.Tensor)}

    def __repr__(self) -> str:
        return f"SiftcHandle(policy={self.policy}, target={self.target}, layers={len(self.layers)})"


# GraphModule.__deepcopy__ re-sets the attributes named under this meta key on the copy (and
# deep-copies the handle with the copy as its .gm), so copy.deepcopy(gm).siftc exists
_PRESERVED = getattr(torch.fx.graph_module, "_USER_PRESERVED_ATTRIBUTES_KEY", "_user_preserved_attributes")


def attach(gm, handle: SiftcHandle) -> None:
    """Set ``gm.siftc`` so that it survives copy.deepcopy and torch.save/torch.load."""
    gm.siftc = handle
    gm.meta.setdefault(_PRESERVED, {})["siftc"] = handle


def handle_of(model):
    h = getattr(model, "siftc", None) if isinstance(model, torch.fx.GraphModule) else None
    return h if isinstance(h, SiftcHandle) else None
