"""masks: choose each sparse weight's density, draw its mask, zero the masked weights.

Sparse weights are the modules with a ``weight_mask`` buffer that this compile's substitute
created (masks from an earlier compile are kept as they are). Densities:
- iso=exact (default): solved so that the compiled model's FLOPs (mask non-zeros counted)
  equal the original dense budget (siftc.densities.iso_exact), uniform or ERK across layers.
- iso=nominal, and always for the ``sparse`` baseline member: non-zeros = (1-s) of the sparse
  weights (uniform or ERK), and the report shows the FLOP ratio that results.
Each mask has exactly round(density * numel) non-zeros at seeded random positions (seed =
policy seed + crc32 of the module path, so masks do not depend on layer order). Weights are
Kaiming-normal on the full shape (set by the member), then masked; init=scaled multiplies the
kept weights by 1/sqrt(density) (docs/method.md, "Pilot lessons").
"""
from __future__ import annotations

import math
import zlib

import torch

from siftc.core import densities, patterns
from siftc.core.errors import IsoFlopError
from siftc.core.masking import exact_count, exact_mask
from . import flops as flops_pass
from siftc.core.pass_registry import PassResult, register


def _layer_flops(gm, count: str = "all") -> tuple[dict, int]:
    """Dense FLOPs of each masked module (summed over its calls) and FLOPs of everything else
    (with ``count="matmul"``, only the matmul-class rest: policy key count=)."""
    per_module: dict = {}
    rest = 0
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        if info is None:
            continue
        if n.op == "call_module" and hasattr(gm.get_submodule(n.target), "weight_mask"):
            per_module[n.target] = per_module.get(n.target, 0) + info.dense_flops
        elif count == "all" or info.category in flops_pass.MATMUL_CATEGORIES:
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
            if hasattr(gm.get_submodule(n.target), "weight_mask"):
                continue
            key = n.target
        else:
            key = f"{info.category} ops"
        cost[key] = cost.get(key, 0) + info.flops
    ranked = sorted(cost.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v / budget:.2f}x" for k, v in ranked)


def _draw(shape, density: float, pattern, generator, q: str, ctx) -> tuple[torch.Tensor, int]:
    """The mask of one layer under the policy's pattern (unstructured where the shape does not fit),
    and the number of non-zeros it was planned to have (what verify holds it to)."""
    n = math.prod(shape)
    if pattern.kind != "none" and not patterns.supports(shape, pattern):
        ctx.warn(f"masks: layer '{q}' with weight {shape} does not fit pattern={ctx.policy.pattern} "
                 f"(matrix view {patterns.matrix_shape(shape)}); its mask is unstructured")
    elif pattern.kind == "block":
        tiles = n // pattern.block ** 2
        return (patterns.block_mask(shape, density, pattern.block, generator, exact_mask),
                exact_count(tiles, density) * pattern.block ** 2)
    elif pattern.kind == "nm":
        return patterns.nm_mask(shape, pattern.n, pattern.m, generator), n // pattern.m * pattern.n
    return exact_mask(shape, density, generator), exact_count(n, density)


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
        rest += per_module.pop(q) * int(torch.count_nonzero(mod.weight_mask)) // mod.weight_mask.numel()
    shapes = {q: tuple(gm.get_submodule(q).weight.shape) for q in new}
    if policy.iso == "exact" and policy.member != "sparse":
        try:
            dens = densities.iso_exact(shapes, {q: per_module[q] for q in new}, rest, budget,
                                       policy.dist, policy.sparsity)
        except IsoFlopError as e:
            e.args = (f"{e.args[0]} Largest dense parts: {_largest_dense(gm, ctx.budget_flops)}.",)
            raise
        what = "FLOPs" if policy.count == "all" else "matmul-class FLOPs (count=matmul)"
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
    nnz_total = 0
    with torch.no_grad():
        for q in new:
            mod = gm.get_submodule(q)
            g = torch.Generator().manual_seed(policy.seed * 1_000_003 + zlib.crc32(q.encode()))
            mask, ctx.planned_nonzeros[q] = _draw(tuple(mod.weight.shape), dens[q], pattern, g, q, ctx)
            mask = mask.to(mod.weight.device)
            dens[q] = float(torch.count_nonzero(mask)) / mask.numel()      # realised (blocks quantise it)
            mod.weight_mask.copy_(mask)
            if policy.init == "scaled" and dens[q] > 0:
                mod.weight.mul_(1.0 / math.sqrt(dens[q]))
            mod.weight.mul_(mask)
            ctx.densities[q] = dens[q]
            nnz_total += int(torch.count_nonzero(mask))
    # The graph itself is unchanged (only weights and mask buffers): the pass manager refreshes the
    # FLOP meta (kind weights invalidates it) and the verify pass checks the masks.
    return PassResult(gm, False, {"masked": len(new), "nonzeros": nnz_total})
