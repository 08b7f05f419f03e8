"""``gm.siftc``: a compiled GraphModule's handle, its compile state and the pass records.

The handle is the GraphModule, the ``CompileState`` its compile ended with (less the transient
fields: siftc/core/state.py) and the recorder's records. It answers for the state's fields
(``gm.siftc.policy``, ``.layers``, ``.densities``, ...), rebuilds the report at any time (after
training too) and lets compiling the GraphModule again re-run only what the new target needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from siftc.core.state import CompileState
from siftc.core.mask_api import masked_weights

_STATE_FIELDS = frozenset(f.name for f in dataclasses.fields(CompileState))


@dataclass
class SiftcHandle:
    gm: Any
    state: CompileState
    pipeline: str = ""
    timings: list = field(default_factory=list)     # (pass, seconds)
    passes: list = field(default_factory=list)      # siftc.recorder records (dump files, HTML viewer)

    def __getattr__(self, name):
        # only reached for names the handle itself lacks: the compile state's fields
        state = self.__dict__.get("state")
        if state is not None and name in _STATE_FIELDS:
            return getattr(state, name)
        raise AttributeError(f"'SiftcHandle' object has no attribute {name!r}")

    def report(self, refresh: bool = True):
        from siftc.reporting import build_report
        return build_report(self.gm, self, refresh=refresh)

    def masks(self) -> dict:
        """{module path: bool mask} of every masked ``weight`` (siftc.masked_weights(gm) gives
        every masked parameter as a record)."""
        return {w.path: w.mask for w in masked_weights(self.gm) if w.name == "weight"}

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
