"""Pass-by-pass dumps: readable graph code per pass, FLOP table, pipeline and timings.

Files (fixed names, after inductor's debug output and TVM's NNN_passname dumps):
``00_input.py`` the model as given; ``NN_<pass>.py`` the graph after each pass, with a header
(pass, options, node count delta, FLOPs before/after) and a per-node table of the meta written
so far; ``pipeline.txt``; ``flops.md``; ``stats.json`` and ``viewer.json`` (the data of the HTML viewer,
siftc.viewer) are the only files with timings, so every other file is byte-identical for the
same model and policy and can be a golden file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from siftc.core import atomic
from siftc.core.errors import SiftcError

from siftc.passes import flops as flops_pass
from siftc.core.pass_registry import get_pass


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _total(gm):
    if gm is None or not any("siftc.flops" in n.meta for n in gm.graph.nodes):
        return None
    return flops_pass.totals(gm)["total"]


def node_table(gm) -> list[str]:
    rows = ["# node | op | target | shape | role | category | FLOPs"]
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        shape = n.meta.get("siftc.shape")
        target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
        rows.append(f"# {n.name} | {n.op} | {target} | {shape if shape is not None else '-'} | "
                    f"{n.meta.get('siftc.role', '-')} | {info.category if info else '-'} | "
                    f"{_fmt(info.flops) if info else '-'}")
    return rows


def module_table(gm) -> list[str]:
    rows = ["# module | type | weight | non-zeros"]
    seen = set()
    for n in gm.graph.nodes:
        if n.op != "call_module" or n.target in seen:
            continue
        seen.add(n.target)
        m = gm.get_submodule(n.target)
        w = getattr(m, "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        mask = getattr(m, "weight_mask", None)
        nnz = f"{int(torch.count_nonzero(mask)):,}/{mask.numel():,}" if isinstance(mask, torch.Tensor) else "dense"
        rows.append(f"# {n.target} | {type(m).__name__} | {tuple(w.shape)} | {nnz}")
    return rows


class DumpWriter:
    """A pass-manager instrument writing the dump files into ``directory``."""

    def __init__(self, directory, policy, target):
        self.dir = Path(directory)
        check_dump_dir(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("[0-9][0-9]_*.py"):      # a rerun must not leave stale passes
            old.unlink()
        self.policy, self.target = policy, target
        self.index = 0
        self._before_nodes = 0
        self._before_flops = None
        self.timings: list = []

    def write_input(self, model, example_inputs) -> None:
        shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else repr(x) for x in example_inputs]
        lines = [f"# siftc input: {type(model).__name__}", f"# policy: {self.policy}",
                 f"# target: {self.target}", f"# example input shapes: {shapes}", ""]
        if isinstance(model, torch.fx.GraphModule):
            lines.append(model.code.strip())
        else:
            lines += ["# module tree:"] + [f"#   {line}" for line in repr(model).splitlines()]
        atomic.write_text(self.dir / "00_input.py", "\n".join(lines) + "\n")

    def before(self, item, gm, ctx) -> None:
        self._before_nodes = len(gm.graph.nodes) if gm is not None else 0
        self._before_flops = _total(gm)

    def after(self, item, result, ctx, seconds) -> None:
        self.index += 1
        gm = result.gm
        info = get_pass(item.name)
        after_nodes = len(gm.graph.nodes)
        delta = after_nodes - self._before_nodes
        opts = " ".join(f"{k}={v}" for k, v in item.options) or "none"
        header = [
            f"# siftc dump {self.index:02d}: pass '{item.name}' ({'analysis' if info.analysis else 'transform'})",
            f"# {info.summary}",
            f"# policy: {self.policy}   target: {self.target}   pass options: {opts}",
            f"# nodes: {self._before_nodes} -> {after_nodes} ({delta:+d})",
            f"# FLOPs: before {_fmt(self._before_flops) if self._before_flops is not None else 'n/a'}"
            f" / after {_fmt(_total(gm)) if _total(gm) is not None else 'n/a'}",
            f"# stats: {json.dumps(result.stats, sort_keys=True)}",
            "",
        ]
        body = [gm.code.strip(), "", "# ---- nodes (meta written so far) ----", *node_table(gm),
                "", "# ---- weight modules called by the graph ----", *module_table(gm)]
        name = item.name.replace("-", "_")
        atomic.write_text(self.dir / f"{self.index:02d}_{name}.py", "\n".join(header + body) + "\n")
        self.timings.append({"pass": item.name, "seconds": round(seconds, 6), "stats": result.stats})

    def finish(self, pipeline: str, handle) -> None:
        from siftc.viewer import VIEWER_JSON, viewer_data
        report = handle.report(refresh=False)
        atomic.write_text(self.dir / "pipeline.txt", pipeline + "\n")
        atomic.write_text(self.dir / VIEWER_JSON, json.dumps(viewer_data(handle), default=str) + "\n")
        atomic.write_text(self.dir / "flops.md", report.flops_markdown())
        atomic.write_text(self.dir / "stats.json", json.dumps({"pipeline": pipeline, "passes": self.timings}, indent=2) + "\n")


def check_dump_dir(directory) -> None:
    """SiftcError unless ``directory`` is (or can be made) a writable folder; nothing is written."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise SiftcError(f"dump_dir {str(d)!r} is a file, not a folder: give a folder path")
    parent = next((p for p in [d, *d.parents] if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise SiftcError(f"dump_dir {str(d)!r}: {parent} is a file, so the folder cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SiftcError(f"dump_dir {str(d)!r}: {parent} is not writable")


def dump_dir_from_env(explicit):
    return explicit if explicit is not None else os.environ.get("SIFTC_DUMP_DIR") or None
