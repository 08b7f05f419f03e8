"""The pass manager: runs a textual pipeline, verifies after each modifying pass, times passes.

After torch/fx/passes/infra/pass_manager.py: passes run in order; after a pass that modified
the graph it recompiles and runs the verifier (passes.verify.check_graph); each pass is timed;
a failure is re-raised naming the pass, the node (when known) and the passes that ran before.
Each pass is held to the kind it registered (siftc/core/pass_registry.py): a graph-preserving kind
that changed the graph, or a pass that changed it while returning ``modified=False``, is an error.
Instruments (the pass recorder) get ``before(item, gm, ctx)`` / ``after(item, result, ctx, seconds)``.
"""
from __future__ import annotations

import time

from siftc.core.errors import PassError, SiftcError, VerifyError
from siftc.core.gc_scope import compile_objects_only
from siftc.core.members.base import draw_pending_
from siftc.core.pass_registry import GRAPH_PRESERVING, get_pass
from siftc.core.pipeline import PipelineItem, format_pipeline, parse_pipeline
from siftc.passes import flops as flops_pass
from siftc.passes.shape_prop import ensure_shapes
from siftc.passes.verify import check_graph


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
        # full garbage collections during the passes walk only what the compile made, not the
        # ~350k objects of torch/sympy already in the process (siftc/core/gc_scope.py)
        with compile_objects_only():
            return self._run(gm, ctx)

    def _run(self, gm, ctx):
        for i, item in enumerate(self.items):
            info = get_pass(item.name)
            ctx.pass_options = dict(item.options)
            for ins in self.instruments:
                ins.before(item, gm, ctx)
            start = time.perf_counter()
            before = graph_fingerprint(gm)
            try:
                result = info.fn(gm, ctx)
                _check_contract(info, before, result)
                if result.modified:
                    result.gm.recompile()           # the code the analyses key their caches on
                _refresh(result.gm, ctx, info.invalidates)
                if result.modified and self.verify_each:
                    check_graph(result.gm, ctx)
            except SiftcError as e:
                _annotate(e, item.name, ctx.ran)
                raise
            except Exception as e:   # a bug or a torch error: wrap it with where it happened
                raise PassError(item.name, f"{type(e).__name__}: {e}", getattr(e, "node", None), ctx.ran) from e
            gm = result.gm
            following = self.items[i + 1].name if i + 1 < len(self.items) else None
            if item.name in ("substitute", "masks") and following != "masks" and gm is not None:
                # weights whose init substitute deferred to the masks pass, when no masks pass
                # comes next (a custom pipeline): drawn in full now, never left zero
                draw_pending_(gm, ctx.policy.seed)
            seconds = time.perf_counter() - start
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


def _refresh(gm, ctx, stale) -> None:
    """Re-run the analyses a pass made stale, when they had run (the verifier after it only checks)."""
    # shapes also once the compile has output shapes to hold the graph to (a recompile's capture)
    if "shapes" in stale and ("shape-prop" in ctx.ran or ctx.output_shapes is not None):
        ensure_shapes(gm, ctx.example_inputs)
    if "flops" in stale and "flops" in ctx.ran:
        flops_pass.annotate(gm)


def graph_fingerprint(gm):
    """The graph's nodes as (name, op, target, argument names): what a pass that says it changed
    nothing must leave as it was (cheap: no code generation)."""
    if gm is None:
        return None
    return tuple((n.name, n.op, str(n.target), str(n.args), str(n.kwargs)) for n in gm.graph.nodes)


def _check_contract(info, before, result) -> None:
    """Hold a pass to its declared kind: graph-preserving kinds never change the graph, and no pass
    changes it while reporting ``modified=False`` (the verifier would not run)."""
    if before is None:
        return
    changed = graph_fingerprint(result.gm) != before
    if changed and info.kind in GRAPH_PRESERVING:
        raise VerifyError(f"pass {info.name!r} is registered as kind {info.kind!r} but changed the graph; "
                          f"register it as kind='transform' (siftc/core/pass_registry.py)")
    if changed and not result.modified:
        raise VerifyError(f"pass {info.name!r} changed the graph but returned modified=False, so the verifier "
                          f"would not run; return PassResult(gm, True, ...)")
