"""Pass-by-pass dump files: the pass recorder's records rendered as readable files.

Files (fixed names, after inductor's debug output and TVM's NNN_passname dumps):
``00_input.py`` the model as given; ``NN_<pass>.py`` per pass, with a header (pass, kind,
options, node count delta, FLOPs before/after, counters) and, when the pass changed anything
visible (graph code, node meta, weight shapes or non-zeros), the graph code, a per-node table of
the meta written so far and the weight modules; a pass that changed nothing says so in one line
and points at the file that shows the same graph (print-after-change, as LLVM's
``-print-changed``). ``pipeline.txt``; ``flops.md``; ``stats.json`` and ``viewer.json`` (the
data of the HTML viewer) are the only files with timings, so every other file is byte-identical
for the same model and policy and can be a golden file. When a pass fails, ``FAILED.txt`` says
which, with the error and the pipeline prefix that reproduces it; the file of the last pass that
ran holds the graph the failing pass received.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from siftc.core import atomic
from siftc.core.errors import SiftcError


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def node_table(nodes: list[dict]) -> list[str]:
    rows = ["# node | op | target | shape | role | category | FLOPs"]
    for n in nodes:
        rows.append(f"# {n['name']} | {n['op']} | {n['target']} | {n['shape'] or '-'} | {n['role'] or '-'} | "
                    f"{n['category'] or '-'} | {_fmt(n['flops']) if n['flops'] is not None else '-'}")
    return rows


def _body(record: dict) -> list[str]:
    return [record["code"], "", "# ---- nodes (meta written so far) ----", *node_table(record["nodes"]),
            "", "# ---- weight modules called by the graph ----", "# module | type | weight | non-zeros",
            *(f"# {line}" for line in record["modules"].splitlines())]


def render_pass(record: dict, policy, target) -> list[str]:
    """The header of one pass's dump file."""
    opts = " ".join(f"{k}={v}" for k, v in record["options"].items()) or "none"
    fb, fa = record["flops_before"], record["flops_after"]
    return [
        f"# siftc dump {record['index']:02d}: pass '{record['name']}' ({record['kind']})",
        f"# {record['summary']}",
        f"# policy: {policy}   target: {target}   pass options: {opts}",
        f"# nodes: {record['nodes_before']} -> {record['nodes_after']} ({record['nodes_after'] - record['nodes_before']:+d})",
        f"# FLOPs: before {_fmt(fb) if fb is not None else 'n/a'} / after {_fmt(fa) if fa is not None else 'n/a'}",
        f"# stats: {json.dumps(record['stats'], sort_keys=True)}",
        "",
    ]


def file_name(record: dict) -> str:
    return f"{record['index']:02d}_{record['name'].replace('-', '_')}.py"


def owned(name: str) -> bool:
    """A file name the dump writes (anything else in a dump folder is the user's and is kept)."""
    return name in _OWNED or (len(name) > 3 and name[:2].isdigit() and name[2] == "_" and name.endswith(".py"))


_OWNED = {"FAILED.txt", "pipeline.txt", "flops.md", "stats.json", "viewer.json"}


class DumpWriter:
    """Writes each pass's record as it arrives (a listener of the pass recorder), into a folder
    beside ``directory`` that replaces it when the compile ends (siftc.core.atomic.commit_dir): a
    kill or a failure never leaves a half-written dump in place of an earlier one. Files in
    ``directory`` that the dump does not own are carried over."""

    def __init__(self, directory, policy, target):
        self.target_dir = Path(directory)
        check_dump_dir(self.target_dir)
        self.dir = atomic.begin_dir(self.target_dir)
        self.policy, self.target = policy, target
        self._last_body, self._last_file = None, None     # the last pass file that shows the graph in full
        self._written = None                                 # the last pass file written

    def write_input(self, model, example_inputs) -> None:
        shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else repr(x) for x in example_inputs]
        lines = [f"# siftc input: {type(model).__name__}", f"# policy: {self.policy}",
                 f"# target: {self.target}", f"# example input shapes: {shapes}", ""]
        if isinstance(model, torch.fx.GraphModule):
            lines.append(model.code.strip())
        else:
            lines += ["# module tree:"] + [f"#   {line}" for line in repr(model).splitlines()]
        atomic.write_text(self.dir / "00_input.py", "\n".join(lines) + "\n")

    def __call__(self, record: dict) -> None:
        body = _body(record)
        if body == self._last_body:
            body = [f"# unchanged: the graph code, node table and weight modules are those of {self._last_file}"]
        else:
            self._last_body, self._last_file = body, file_name(record)
        self._written = file_name(record)
        atomic.write_text(self.dir / file_name(record), "\n".join(render_pass(record, self.policy, self.target)
                                                                   + body) + "\n")

    def failed(self, error: Exception, ran: list, pipeline: str) -> None:
        """FAILED.txt: the failing pass, its error and the pipeline prefix that reproduces it."""
        name = getattr(error, "pass_name", None) or "?"
        items = pipeline.split(",")
        prefix = ",".join(items[:len(ran) + 1])
        lines = [f"pass '{name}' failed after: {', '.join(ran) or '(none)'}",
                 "the graph it received: " + (f"{self._written} (shown in full in {self._last_file})"
                                              if self._written else "none (no pass finished; see 00_input.py)"),
                 f"reproduce: siftc.compile(model, policy='{self.policy}', target='{self.target}', "
                 f"example_inputs=..., pipeline='{prefix}')", "", f"{type(error).__name__}: {error}"]
        atomic.write_text(self.dir / "FAILED.txt", "\n".join(lines) + "\n")
        # an earlier dump in the folder stays: this one goes beside it, as <folder>.failed
        earlier = self.target_dir.is_dir() and any(owned(n) for n in os.listdir(self.target_dir))
        where = self.target_dir.with_name(self.target_dir.name + ".failed") if earlier else self.target_dir
        if where != self.target_dir and where.is_dir():
            import shutil
            shutil.rmtree(where)
        atomic.commit_dir(self.dir, where, carry=None if earlier else (lambda n: not owned(n)))
        if isinstance(error, SiftcError):
            error.args = (f"{error.args[0]}\n  dumps of this compile: {where}/ (FAILED.txt)"
                          + (f"; the earlier dump in {self.target_dir}/ is kept" if earlier else ""),) + error.args[1:]

    def finish(self, pipeline: str, handle) -> None:
        from siftc.viewer import VIEWER_JSON, viewer_data
        report = handle.report(refresh=False)
        timings = [{"pass": r["name"], "seconds": r["seconds"], "stats": r["stats"]} for r in handle.passes]
        atomic.write_text(self.dir / "pipeline.txt", pipeline + "\n")
        atomic.write_text(self.dir / VIEWER_JSON, json.dumps(viewer_data(handle), default=str) + "\n")
        atomic.write_text(self.dir / "flops.md", report.flops_markdown())
        atomic.write_text(self.dir / "stats.json", json.dumps({"pipeline": pipeline, "passes": timings}, indent=2) + "\n")
        atomic.commit_dir(self.dir, self.target_dir, carry=lambda n: not owned(n))
        self.dir = self.target_dir

    def abandon(self) -> None:
        """The compile stopped by an error that is not siftc's (a KeyboardInterrupt): no dump is
        swapped in, the temp folder goes."""
        if self.dir != self.target_dir:
            atomic.abandon_dir(self.dir)


def check_dump_dir(directory) -> None:
    """UsageError unless ``directory`` is (or can be made) a writable folder; nothing is written.
    (The dump is written beside the folder and swapped in, so its parent must be writable.)"""
    from siftc.core.errors import UsageError
    d = Path(os.path.abspath(directory))
    if d.exists() and not d.is_dir():
        raise UsageError(f"dump_dir {str(directory)!r} is a file, not a folder: give a folder path")
    parent = next((p for p in d.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UsageError(f"dump_dir {str(directory)!r}: {parent} is a file, so the folder cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"dump_dir {str(directory)!r}: {parent} is not writable")


def dump_dir_from_env(explicit):
    return explicit if explicit is not None else os.environ.get("SIFTC_DUMP_DIR") or None
