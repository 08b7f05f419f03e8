"""The pass recorder: one record per pass run, the single source of the dump files and the HTML viewer.

A pass-manager instrument, always on. After each pass it keeps the graph code, a compact node
list (name, op, target, inputs, owning module, shape, role, FLOP category and count), the weight
modules' shapes and non-zeros, node counts, FLOPs before/after and the pass's timing and
counters. Strings, numbers and small lists only, so a record never holds tensors or modules
alive (a record of ``gpt3_small`` costs a few MB at most).

Two renderers read the records: ``siftc.dumps`` (the pass-by-pass files of ``dump_dir``, written
as each record arrives, through ``listeners``) and ``siftc.viewer`` (the HTML page, from
``gm.siftc.passes``).
"""
from __future__ import annotations

import json

import torch

from siftc.core.masking import count_mask
from siftc.core.mask_api import mask_of
from siftc.core.pass_registry import get_pass
from siftc.core.symdims import target_name
from siftc.passes import flops as flops_pass


def total_flops(gm):
    """The graph's FLOPs, or None before the flops pass has annotated it."""
    if gm is None or not any("siftc.flops" in n.meta for n in gm.graph.nodes):
        return None
    return flops_pass.totals(gm)["total"]


def _module_of(n) -> str:
    """The module path a node belongs to: its own for call_module/get_attr, else the innermost
    module on fx's nn_module_stack (recorded by symbolic_trace and torch.export alike)."""
    if n.op in ("call_module", "get_attr"):
        return str(n.target)
    origin = n.meta.get("siftc.origin")
    if origin:
        return str(origin)
    stack = n.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1]
        path = path[0] if isinstance(path, tuple) else path
        return str(path)
    return ""


def graph_nodes(gm) -> list[dict]:
    out = []
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        shape = n.meta.get("siftc.shape")
        out.append({"name": n.name, "op": n.op, "target": target_name(n),
                    "inputs": [a.name for a in n.all_input_nodes], "module": _module_of(n),
                    "shape": None if shape is None else str(shape), "role": n.meta.get("siftc.role"),
                    "category": info.category if info is not None else None,
                    "flops": int(info.flops) if info is not None else None})
    return out


def weight_modules(gm) -> list[str]:
    """'path | type | weight shape | non-zeros' of every weight module the graph calls, in call
    order: Sparse Wide changes these, not the graph code."""
    rows, seen = [], set()
    modules = dict(gm.named_modules(remove_duplicate=False))    # one walk, not a lookup per call node
    for n in gm.graph.nodes:
        if n.op != "call_module" or n.target in seen:
            continue
        seen.add(n.target)
        m = modules[n.target]
        mask = mask_of(m)
        # a masked module's shape from its mask: a sparse kernel's weight is built on request
        w = mask if mask is not None else getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        nnz = f"{count_mask(mask):,}/{mask.numel():,}" if mask is not None else "dense"
        rows.append(f"{n.target} | {type(m).__name__} | {tuple(w.shape)} | {nnz}")
    return rows


def _plain(stats: dict) -> dict:
    """Counters as JSON values (anything else as its string)."""
    return json.loads(json.dumps(stats or {}, default=str))


class PassRecorder:
    """Instrument: ``records`` gets one dict per pass run; each listener is called with it."""

    def __init__(self, listeners=()):
        self.records: list[dict] = []
        self.listeners = list(listeners)
        self._nodes_before = 0
        self._flops_before = None

    def before(self, item, gm, ctx) -> None:
        self._nodes_before = len(gm.graph.nodes) if gm is not None else 0
        self._flops_before = total_flops(gm)

    def after(self, item, result, ctx, seconds) -> None:
        gm = result.gm
        info = get_pass(item.name)
        record = {
            "index": len(self.records) + 1, "name": item.name, "kind": info.kind, "summary": info.summary,
            "options": {k: str(v) for k, v in item.options}, "seconds": round(seconds, 6),
            "nodes_before": self._nodes_before, "nodes_after": len(gm.graph.nodes),
            "flops_before": self._flops_before, "flops_after": total_flops(gm),
            "stats": _plain(result.stats), "code": gm.code.strip(), "nodes": graph_nodes(gm),
            "modules": "\n".join(weight_modules(gm))}
        self.records.append(record)
        for listen in self.listeners:
            listen(record)
