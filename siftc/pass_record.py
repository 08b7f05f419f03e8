"""What each pass did, kept in memory for the HTML viewer (``gm.siftc.passes``).

A pass-manager instrument, always on: after each pass it keeps the graph code, a compact node
list (name, op, target, inputs, owning module, FLOPs) for the graph picture, node counts, FLOPs
before/after and the pass's timing and counters. Strings and small lists only, so a record of
``gpt3_small`` costs a few MB at most and never holds tensors or modules alive.
"""
from __future__ import annotations

from siftc.core.pass_registry import get_pass

from siftc.dumps import _total, module_table


def _target_name(n) -> str:
    return n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))


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
        out.append({"name": n.name, "op": n.op, "target": _target_name(n),
                    "inputs": [a.name for a in n.all_input_nodes], "module": _module_of(n),
                    "flops": int(info.flops) if info is not None else None,
                    "role": n.meta.get("siftc.role")})
    return out


class PassRecorder:
    """Instrument: ``records`` gets one dict per pass run."""

    def __init__(self):
        self.records: list[dict] = []
        self._nodes_before = 0
        self._flops_before = None

    def before(self, item, gm, ctx) -> None:
        self._nodes_before = len(gm.graph.nodes) if gm is not None else 0
        self._flops_before = _total(gm)

    def after(self, item, result, ctx, seconds) -> None:
        gm = result.gm
        info = get_pass(item.name)
        self.records.append({
            "index": len(self.records) + 1, "name": item.name,
            "kind": "analysis" if info.analysis else "transform", "summary": info.summary,
            "options": {k: str(v) for k, v in item.options}, "seconds": round(seconds, 6),
            "nodes_before": self._nodes_before, "nodes_after": len(gm.graph.nodes),
            "flops_before": self._flops_before, "flops_after": _total(gm),
            "stats": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                      for k, v in (result.stats or {}).items()},
            "code": gm.code.strip(), "nodes": graph_nodes(gm),
            # weight shapes and non-zeros per module: Sparse Wide changes these, not the code
            "modules": "\n".join(line[2:] for line in module_table(gm))})
