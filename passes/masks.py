"""masks: choose each sparse weight's density, draw its mask, zero the masked weights.

Sparse weights are the modules with a masked weight (siftc/core/mask_api.py) that this compile's substitute
created (masks from an earlier compile are kept as they are). Densities:
- iso=exact (default): solved so that the compiled model's FLOPs (mask non-zeros counted)
  equal the original dense budget (siftc.densities.iso_exact), uniform or ERK across layers.
- iso=nominal, and always for the ``sparse`` baseline member: non-zeros = (1-s) of the sparse
  weights (uniform or ERK), and the report shows the FLOP ratio that results.
Each mask has exactly round(density * numel) non-zeros at seeded random positions (seed =
policy seed + crc32 of the module path, so masks do not depend on layer order). A fresh sparse
weight is Kaiming-normal (std from its full shape), drawn here at the kept entries only, from the
same generator after the mask; a weight drawn before (an earlier compile's) is masked. init=scaled
multiplies the kept weights by 1/sqrt(density) (docs/method.md, "Pilot lessons").
"""
from __future__ import annotations

import concurrent.futures
import math

import torch

from siftc.core import densities, patterns
from siftc.core.errors import IsoFlopError
from siftc.core.mask_api import is_masked, mask_of
from siftc.core.masking import count_mask, exact_count, exact_mask, fill_kept_, layer_generator, numpy_ok
from siftc.core.members.base import take_pending_std
from . import flops as flops_pass
from siftc.core.pass_registry import PassResult, register


def _layer_flops(gm, count: str = "all") -> tuple[dict, int]:
    """Dense FLOPs of each masked module (summed over its calls) and FLOPs of everything else
    that policy key ``count=`` counts (all, matmul-class, the authors' layers)."""
    cats = flops_pass.COUNTED[count]
    per_module: dict = {}
    rest = 0
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        if info is None:
            continue
        if n.op == "call_module" and is_masked(gm.get_submodule(n.target)):
            per_module[n.target] = per_module.get(n.target, 0) + info.dense_flops
        elif cats is None or info.category in cats:
            rest += info.flops
    return per_module, rest


def _largest_dense(gm, budget: int, top: int = 4) -> str:
    """The unmasked ops that cost the most, by module (or by category for functional ops)."""
    cost: dict = {}
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        if info is None or not info.flops:
            continue
        if n.op == "call_module":
            if is_masked(gm.get_submodule(n.target)):
                continue
            key = n.target
        else:
            key = f"{info.category} ops"
        cost[key] = cost.get(key, 0) + info.flops
    ranked = sorted(cost.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v / budget:.2f}x" for k, v in ranked)


def _draw(shape, density: float, pattern, generator, q: str, policy, out) -> tuple[torch.Tensor, int, str]:
    """The mask of one layer under the policy's pattern (unstructured where the shape does not fit),
    the number of non-zeros it was planned to have (what verify holds it to), and a warning.
    An unstructured mask is drawn straight into ``out`` (the layer's mask buffer) when it can be."""
    n = math.prod(shape)
    if pattern.kind != "none" and not patterns.supports(shape, pattern):
        return (exact_mask(shape, density, generator), exact_count(n, density),
                f"masks: layer '{q}' with weight {shape} does not fit pattern={policy.pattern} "
                f"(matrix view {patterns.matrix_shape(shape)}); its mask is unstructured")
    if pattern.kind == "block":
        tiles = n // pattern.block ** 2
        return (patterns.block_mask(shape, density, pattern.block, generator, exact_mask),
                exact_count(tiles, density) * pattern.block ** 2, "")
    if pattern.kind == "nm":
        return patterns.nm_mask(shape, pattern.n, pattern.m, generator), n // pattern.m * pattern.n, ""
    return exact_mask(shape, density, generator, out=out if numpy_ok(out) else None), exact_count(n, density), ""


def _fill(q: str, mod, density: float, pattern, policy) -> tuple[float, int, int, str]:
    """Draw one layer's mask and its kept weights; (realised density, planned and actual
    non-zeros, warning). Called from worker threads: it touches only this layer."""
    g = layer_generator(policy.seed, q)
    with torch.no_grad():
        buffer = mask_of(mod)
        mask, planned, warning = _draw(tuple(mod.weight.shape), density, pattern, g, q, policy, buffer)
        if mask is not buffer:
            buffer.copy_(mask)
        mask = buffer
        nnz = count_mask(mask)
        density = nnz / mask.numel()      # realised (blocks quantise it)
        scale = 1.0 / math.sqrt(density) if policy.init == "scaled" and density > 0 else 1.0
        std = take_pending_std(mod)
        if std is None:       # a weight drawn before (or kept): scale it, zero the masked entries
            mod.weight.mul_(scale)
            mod.weight.mul_(mask)
        else:                 # drawn here, at the kept entries only, from this layer's generator
            # (the weight is zero since substitute deferred it; verify checks the masked entries)
            values = torch.randn(nnz, generator=g, dtype=mod.weight.dtype).mul_(std * scale)
            fill_kept_(mod.weight, mask, values.to(mod.weight.device))
    return density, planned, nnz, warning


_REBUILT = ("parallel", "factorized", "doped")


def _zero_plain_residual_norms(gm, ctx) -> None:
    """Policy init=reference: the norm ending each plain residual branch starts at weight 0 (the
    block starts as its shortcut: torchvision's zero_init_residual, on in the authors' code). A
    branch whose layers parallel/factorized/doped rebuilt keeps 1, as the authors' blocks do."""
    for norm, layers in ctx.residual_norms:
        rebuilt = any(ctx.layers[q].member in _REBUILT and "shortcut" not in ctx.layers[q].detail
                      for q in layers if q in ctx.layers)
        try:
            mod = gm.get_submodule(norm)
        except AttributeError:
            continue                       # replaced by a member's branch norms (parallel)
        if rebuilt or getattr(mod, "weight", None) is None:
            continue
        with torch.no_grad():
            mod.weight.zero_()
        ctx.initialised[f"{norm}.weight"] = "init=reference: 0 (the norm ending a plain residual branch)"


@register("masks", "mask buffers with exact non-zero counts; densities uniform/ERK, solved for iso-FLOP",
          kind="weights", requires=("substitute",), once=True,
          policy_keys=("dist", "iso", "count", "init", "seed", "pattern"))
def masks(gm, ctx) -> PassResult:
    new = [q for rec in ctx.layers.values() for q in rec.sparse_modules if q not in ctx.densities]
    if not new:
        return PassResult(gm, False, {"masked": 0})
    policy = ctx.policy
    # FLOP meta is current: substitute invalidates it and the pass manager re-annotated the graph
    per_module, rest = _layer_flops(gm, policy.count)
    budget = flops_pass.iso_budget(policy, ctx.budget_flops, ctx.budget_by_category)
    # masked modules of an earlier compile keep their masks: count them with the dense rest
    old = [q for q in per_module if q not in new]
    for q in old:
        mod = gm.get_submodule(q)
        mask = mask_of(mod)
        rest += per_module.pop(q) * int(torch.count_nonzero(mask)) // mask.numel()
    shapes = {q: tuple(gm.get_submodule(q).weight.shape) for q in new}
    if policy.iso == "exact" and policy.member != "sparse":
        try:
            dens = densities.iso_exact(shapes, {q: per_module[q] for q in new}, rest, budget,
                                       policy.dist, policy.sparsity)
        except IsoFlopError as e:
            e.args = (f"{e.args[0]} Largest dense parts: {_largest_dense(gm, ctx.budget_flops)}.",)
            raise
        what = {"all": "all FLOPs (count=all)", "matmul": "matmul-class FLOPs (count=matmul)",
                "layers": "the authors' counted FLOPs: conv/linear, norms, pooling (count=layers)"}[policy.count]
        ctx.iso_note = f"iso=exact: densities solved ({policy.dist}) so {what} match the dense budget"
    else:
        dens = densities.nominal(shapes, policy.sparsity, policy.dist)
        why = "member 'sparse' is the non-iso baseline" if policy.member == "sparse" else "iso=nominal"
        ctx.iso_note = f"{why}: non-zeros = {1 - policy.sparsity:.4g} of the sparse weights ({policy.dist})"
    pattern = policy.mask_pattern
    if pattern.kind == "nm":     # density N/M by construction: the iso solve cannot move it
        dens = {q: pattern.density for q in new}
        ctx.iso_note = (f"pattern={policy.pattern}: every sparse layer keeps {pattern.n} of {pattern.m} "
                        f"(density {pattern.density:.4g}); iso-FLOP is not solved")
    # Layers are drawn in parallel: each has its own generator (seeded from its path), so the
    # result does not depend on the order or the threads, and torch's random draws are
    # single-threaded, so a compile on 2 threads draws ~2x faster (docs/results.md, compile).
    jobs = [(q, gm.get_submodule(q)) for q in new]
    tied = len({id(mod.weight) for _, mod in jobs}) < len(jobs)      # one tensor, two layers: in order
    workers = 1 if tied else max(1, min(torch.get_num_threads(), len(jobs)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda job: _fill(job[0], job[1], dens[job[0]], pattern, policy), jobs))
    nnz_total = 0
    for (q, _), (density, planned, nnz, warning) in zip(jobs, done):
        if warning:
            ctx.warn(warning)
        ctx.planned_nonzeros[q] = planned
        ctx.densities[q] = density
        nnz_total += nnz
    if policy.init == "reference":
        _zero_plain_residual_norms(gm, ctx)
    # The graph itself is unchanged (only weights and mask buffers): the pass manager refreshes the
    # FLOP meta (kind weights invalidates it) and the verify pass checks the masks.
    return PassResult(gm, False, {"masked": len(new), "nonzeros": nnz_total})
