"""verify: the invariants every compiled graph keeps.

``check_graph`` runs after every modifying pass (the pass manager calls it, once it has refreshed
the analyses the pass invalidated): fx lint, every module target exists, shapes current, output
shapes equal the original model's. It only checks; it changes no meta. The ``verify`` pass adds
the end-of-pipeline checks: masked weights are zero, every mask has the planned non-zero count, and the compiled FLOPs
(mask non-zeros counted) are within ``tol`` of the dense budget when iso=exact applies, and every
parameter and buffer of the user's model is accounted for (passes/account.py).
"""
from __future__ import annotations

import concurrent.futures

import numpy as np
import torch

from siftc.core.errors import IsoFlopError, VerifyError
from siftc.core.masking import numpy_ok
from siftc.core.mask_api import mask_of
from . import flops as flops_pass
from siftc.core.pass_registry import PassResult, register
from .account import account
from .shape_prop import output_shapes, shapes_are_current


def check_graph(gm, ctx) -> None:
    gm.graph.lint()
    for n in gm.graph.nodes:
        if n.op == "call_module":
            try:
                gm.get_submodule(n.target)
            except AttributeError:
                err = VerifyError(f"node '{n.name}' calls module '{n.target}', which does not exist")
                err.node = n
                raise err from None
    if ctx.output_shapes is None:          # before shape-prop's first run there is nothing to compare
        return
    if not shapes_are_current(gm, ctx.example_inputs):
        raise VerifyError("shape meta is stale: the graph or its weights changed after shapes were propagated "
                          "(a pass that changes them must say so: kind='transform', or invalidates=('shapes',))")
    got = output_shapes(gm)
    if got != ctx.output_shapes:
        raise VerifyError(f"output shapes changed: the original model gives {ctx.output_shapes}, "
                          f"the rewritten graph gives {got}")


def iso_flop_ratio(gm, ctx) -> float:
    """The ratio the policy's ``count=`` makes exact: all FLOPs, or the matmul-class ones."""
    t = flops_pass.totals(gm)
    budget = flops_pass.iso_budget(ctx.policy, ctx.budget_flops, ctx.budget_by_category)
    spent = t["total"] if ctx.policy.count == "all" else flops_pass.counted_total(t, ctx.policy.count)
    return spent / budget if budget else 1.0


def _warn_added_work(gm, ctx, limit: float = 0.10) -> None:
    """Warn when the ops members add outside what count= counts (norms, activations: parallel's
    branch norms, factorized's inner norm) cost more than ``limit`` of the counted budget: the iso
    ratio is then exact about a part of the work only (the all-FLOP ratio says the rest)."""
    if ctx.policy.count == "all" or not ctx.budget_by_category:
        return
    t = flops_pass.totals(gm)
    budget = flops_pass.counted_total(ctx.budget_by_category, ctx.policy.count)
    added = (t["total"] - flops_pass.counted_total(t, ctx.policy.count)) - \
        (ctx.budget_flops - budget)
    if budget and added > limit * budget:
        ctx.warn(f"verify: the ops member '{ctx.policy.member}' adds outside count={ctx.policy.count} (norms, "
                 f"activations) cost {added / budget:.1%} of the counted budget; the all-FLOP ratio is "
                 f"{t['total'] / ctx.budget_flops:.4f} (count=all solves over every op)")


def iso_applies(ctx) -> bool:
    return (ctx.policy.iso == "exact" and ctx.policy.member not in ("sparse", "dense") and bool(ctx.densities)
            and ctx.policy.mask_pattern.kind != "nm")


def _check_mask(q: str, mod, want, fresh: bool) -> None:
    """One masked layer: weights zero where the mask is False, the planned non-zero count, and
    (``fresh``: drawn in this compile) kept weights non-zero."""
    mask = mask_of(mod)
    weight = mod.weight.detach()
    # the common case in one numpy comparison (~6x faster than the torch checks below on CPU):
    # non-zero exactly where the mask is True, with the planned count, passes every check below
    if numpy_ok(weight) and numpy_ok(mask) and weight.shape == mask.shape:
        m = mask.numpy()
        if (want is None or int(np.count_nonzero(m)) == want) and np.array_equal(weight.numpy() != 0, m):
            return
    if bool(weight.ne(0).logical_and_(mask.logical_not()).any()):
        raise VerifyError(f"module '{q}': weights are non-zero where the mask is False")
    # the count the masks pass planned from the solved density (not one derived from the mask)
    kept = int(torch.count_nonzero(mask))
    if want is not None and kept != want:
        raise VerifyError(f"module '{q}': mask has {kept} non-zeros, planned {want}")
    # masks drawn in this compile come with freshly drawn weights: kept ones are zero only
    # by chance (float32 randn gives an exact 0 about once in 2**24 draws), so more than 1%
    # of zeros is an init that never happened. (After training, grown weights start at zero:
    # a later compile of a trained model does not check this.)
    if fresh:
        zeros = kept - int(torch.count_nonzero(weight))
        if zeros > kept // 100:
            raise VerifyError(f"module '{q}': {zeros} of its {kept} kept weights are zero right after the "
                              f"masks pass drew them: their init was lost (a siftc bug; please report it "
                              f"with the model and policy)")


@register("verify", "lint, output shapes, masked weights zero, exact non-zero counts, iso-FLOP within tol",
          kind="check", requires=("flops",), policy_keys=("tol",))
def verify(gm, ctx) -> PassResult:
    check_graph(gm, ctx)
    accounted = {} if ctx.recompile else account(gm, ctx)
    fresh = "masks" in ctx.ran
    jobs = [(q, gm.get_submodule(q), ctx.planned_nonzeros.get(q)) for q in ctx.densities]
    # layers checked in parallel (the scans release the GIL); the first failure in layer order raises
    workers = max(1, min(torch.get_num_threads(), len(jobs)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_check_mask, q, mod, want, fresh) for q, mod, want in jobs]:
            future.result()
    ratio = iso_flop_ratio(gm, ctx)
    if iso_applies(ctx) and abs(ratio - 1.0) > ctx.policy.tol:
        raise VerifyError(f"iso-FLOP broken: compiled FLOPs are {ratio:.4f}x the dense budget "
                          f"(tolerance {ctx.policy.tol}); densities: {ctx.iso_note}")
    _warn_added_work(gm, ctx)
    missing = flops_pass.uncounted(gm)
    if missing:
        listed = "; ".join(f"node '{u['node']}' ({u['target']}): {u['reason']}" for u in missing[:5])
        if iso_applies(ctx):
            raise IsoFlopError(f"verify: iso=exact cannot be guaranteed: {len(missing)} node(s) have a cost siftc "
                               f"could not establish: {listed}. Give the module kind a FLOP rule "
                               f"(siftc.register_module_rule, siftc/core/ops.py), or compile with iso=nominal to "
                               f"accept a ratio that leaves them out (the report lists them as uncounted)")
        ctx.warn(f"verify: {len(missing)} node(s) are not in any FLOP figure (uncounted): {listed}")
    counts = {f"tensors_{how}": sum(1 for v in accounted.values() if v == how) for how in set(accounted.values())}
    return PassResult(gm, False, {"iso_flop_ratio": round(ratio, 6), **dict(sorted(counts.items()))})

