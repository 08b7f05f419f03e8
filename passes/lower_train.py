"""lower-train: the training form of a compiled graph (targets cpu and cuda).

Weights are already zero where masked (masks pass), so the forward has no mask multiply and
reads the weight directly. Every masked weight gets a gradient hook returning ``grad * mask``
at once (so code that never runs the eager module forward, such as ``torch.compile(gm)`` before
any eager step, still sees masked gradients), and every masked module a forward pre-hook that,
on each eager forward with autograd on, re-installs it on the module's current weight tensor:
``copy.deepcopy``, pickling and ``load_state_dict`` drop or replace tensor hooks. A deepcopy of
the GraphModule re-installs them at once too (``install`` runs as its deepcopy hook).
The gradient *arriving* at the hook is the dense gradient (docs/method.md, "Sparse training"), which
is what RigL reads. Training graphs stay dense-with-zeros on CUDA too: DST needs that dense
gradient, which a sparse kernel would not produce.
"""
from __future__ import annotations

import torch

from siftc.core.masking import install
from siftc.core.pass_registry import PassResult, register


@register("lower-train", "zero-filled weights + gradient-mask hooks (no mask multiply in forward); move to target",
          kind="weights", requires=("capture",), last=True, policy_keys=("kernels",),
          invalidates=())       # hooks and the device: no count changes
def lower_train(gm, ctx) -> PassResult:
    hooked = install(gm)
    lowered = 0
    if ctx.policy.kernels != "dense" and ctx.mode == "train" and ctx.policy.dst == "static":
        if ctx.target == "cuda":      # the choice is timed on the CPU, without CUDA synchronisation
            ctx.warn(f"policy kernels={ctx.policy.kernels}: sparse training kernels are measured and run on the "
                     f"CPU only (target cuda: the layers stay dense-with-zeros)")
        else:
            lowered = _sparse_kernels(gm, ctx)  # (SET/RigL: siftc.DST swaps them in when masks stop moving)
    device = "cpu"
    if ctx.target == "cuda":
        if torch.cuda.is_available():
            device = "cuda"
        else:
            ctx.warn("target='cuda' but CUDA is not available: the compiled graph (the same training "
                     "graph for cpu and cuda) is left on the CPU; move it with gm.to('cuda')")
    gm.to(device)
    stats = {"hooked": hooked, "device": device}
    if ctx.policy.kernels != "dense":
        stats["sparse_kernels"] = lowered
    return PassResult(gm, lowered > 0, stats)


def _sparse_kernels(gm, ctx) -> int:
    """Policy kernels=auto|csr|sparseprop: masked linears train through sparse kernels where
    measured faster at the example inputs (siftc/core/train_kernels.py)."""
    from siftc.core.errors import UsageError
    from siftc.core.train_kernels import lower_for_training, sparseprop_available
    if ctx.policy.kernels == "sparseprop" and not sparseprop_available():
        raise UsageError("policy kernels=sparseprop needs the sparseprop package (pip install pybind11 && pip install "
                         "--no-build-isolation sparseprop); kernels=auto uses it when installed, torch's CSR otherwise")
    decisions = lower_for_training(gm, ctx.example_inputs, ctx.policy.kernels)
    ctx.kernels = decisions
    # the swapped layers hold their kept values instead of a dense weight: the shapes' key (which
    # covers the weights) moved, not a shape; re-propagating here keeps this pass out of the
    # 'transform' kind, which would re-run analyses after every training compile
    from .shape_prop import ensure_shapes
    ensure_shapes(gm, ctx.example_inputs)
    if not decisions:
        ctx.warn(f"policy kernels={ctx.policy.kernels}: no masked nn.Linear to run through a sparse kernel (convs "
                 f"and other layers stay dense-with-zeros)")
    return sum(d["kernel"] != "dense" for d in decisions.values())
