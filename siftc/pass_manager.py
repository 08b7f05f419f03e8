"""The pass manager: runs a textual pipeline, verifies after each modifying pass, times passes.

After torch/fx/passes/infra/pass_manager.py: passes run in order; after a pass that modified
the graph it recompiles and runs the verifier (passes.verify.check_graph); each pass is timed;
a failure is re-raised naming the pass, the node (when known) and the passes that ran before.
Instruments (e.g. the dump writer) get ``before(name, gm, ctx)`` / ``after(name, result, ctx, seconds)``.
"""
from __future__ import annotations

import time

from siftc.core.pipeline import PipelineItem, format_pipeline, parse_pipeline
from siftc.core.pass_registry import get_pass
from siftc.passes.verify import check_graph

from siftc.core.errors import PassError, SiftcError


class PassManager:
    def __init__(self, pipeline, instruments=(), verify_each: bool = True):
        self.items: list[PipelineItem] = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
        self.instruments = list(instruments)
        self.verify_each = verify_each
        self.timings: list = []        # (pass name, seconds)
        self.stats: dict = {}          # pass name -> its counters

    @property
    def pipeline(self) -> str:
        return format_pipeline(self.items)

    def run(self, gm, ctx):
        for item in self.items:
            info = get_pass(item.name)
            ctx.pass_options = dict(item.options)
            for ins in self.instruments:
                ins.before(item, gm, ctx)
            start = time.perf_counter()
            try:
                result = info.fn(gm, ctx)
                if result.modified and self.verify_each:
                    result.gm.recompile()
                    check_graph(result.gm, ctx)
            except SiftcError as e:
                _annotate(e, item.name, ctx.ran)
                raise
            except Exception as e:   # a bug or a torch error: wrap it with where it happened
                raise PassError(item.name, f"{type(e).__name__}: {e}", getattr(e, "node", None), ctx.ran) from e
            seconds = time.perf_counter() - start
            gm = result.gm
            self.timings.append((item.name, seconds))
            self.stats[item.name] = result.stats
            ctx.ran.append(item.name)
            for ins in self.instruments:
                ins.after(item, result, ctx, seconds)
        return gm


def _annotate(e: SiftcError, name: str, ran) -> None:
    """Prefix a siftc error with the pass and the passes before it (once)."""
    if getattr(e, "pass_name", None):
        return
    e.pass_name = name
    node = getattr(e, "node", None)
    where = f"\n  node: {node.format_node()}" if node is not None else ""
    before = ", ".join(ran) or "(none)"
    e.args = (f"pass '{name}' failed: {e.args[0] if e.args else ''}{where}\n  passes run before: {before}",)
