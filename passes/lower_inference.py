"""lower-inference: CSR kernels for the sparse layers where a measurement says they are faster.

For every masked nn.Linear / nn.Conv2d (groups=1) the dense op and its sparse kernel
(siftc.kernels: ``W_csr @ x.T``, im2col + CSR for convs) are timed on the layer's own weight at
its input shape from the example inputs (so pass the batch size you will serve), and the module
is swapped for the kernel only when it is at least ``MARGIN`` faster. The graph code does not
change (same module paths, same call sites). The lowered model's output on the example inputs
must equal the unlowered output within 1e-5 relative, or the pass fails. The decisions and the
measured speedups go to ``ctx.kernels`` and the report. The result is an inference model: eval
mode, no gradients.
"""
from __future__ import annotations

import torch

from siftc.core import kernels
from siftc.core.errors import VerifyError
from siftc.core.pass_registry import PassResult, register


def _relative_error(a, b) -> float:
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


def _lower_cuda_2_4(gm, ctx) -> PassResult:
    """target cuda, pattern=2:4: semi-structured weights where shape and dtype allow (unverified on a GPU here)."""
    if not torch.cuda.is_available():
        raise VerifyError("lower-inference: target='cuda' with pattern=2:4 needs a CUDA device (2:4 kernels are "
                          "CUDA-only); compile for target='cpu' to get CSR/BSR kernels instead")
    gm.to("cuda")
    inputs = tuple(x.to("cuda") if isinstance(x, torch.Tensor) else x for x in ctx.example_inputs)
    with torch.no_grad():
        before = gm(*inputs)
    plan = kernels.lower_semi_structured(gm)
    with torch.no_grad():
        after = gm(*inputs)
    err = _relative_error(after.float(), before.float())
    if err > 1e-2:
        raise VerifyError(f"lower-inference: 2:4 lowering changed the output by {err:.3g} relative")
    ctx.kernels.update({k: {"kernel": "2:4" if v == "2:4" else "dense", "reason": v} for k, v in plan.items()})
    return PassResult(gm, False, {"lowered": sum(v == "2:4" for v in plan.values()), "max_rel_err": err})


@register("lower-inference", "swap sparse layers for CSR/BSR kernels where measured faster (cpu), 2:4 on cuda",
          kind="transform", requires=("capture",), last=True)
def lower_inference(gm, ctx) -> PassResult:
    gm.eval()
    for p in gm.parameters():
        p.requires_grad_(False)
    if ctx.target == "cuda":
        return _lower_cuda_2_4(gm, ctx)
    pattern = ctx.policy.mask_pattern
    decisions, before = kernels.lower_tree(gm, ctx.example_inputs,
                                           blocksize=pattern.block if pattern.kind == "block" else None)
    ctx.kernels.update(decisions)
    chosen = sum(1 for d in decisions.values() if d["kernel"] != "dense")
    with torch.no_grad():
        after = gm(*ctx.example_inputs)
    err = max((_relative_error(a, b) for a, b in zip(torch.utils._pytree.tree_leaves(after),
                                                      torch.utils._pytree.tree_leaves(before))), default=0.0)
    if err > 1e-5:
        raise VerifyError(f"lower-inference: the lowered model differs from the unlowered one by {err:.3g} "
                          f"relative (limit 1e-5)")
    # modules were swapped, the graph was not: shapes and FLOP meta stay valid (flops knows the kernels)
    return PassResult(gm, False, {"lowered": chosen, "measured": len(ctx.kernels), "max_rel_err": err})
