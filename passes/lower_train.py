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
          kind="weights", requires=("capture",), last=True,
          invalidates=())       # hooks and the device: no count changes
def lower_train(gm, ctx) -> PassResult:
    hooked = install(gm)
    device = "cpu"
    if ctx.target == "cuda":
        if torch.cuda.is_available():
            device = "cuda"
        else:
            ctx.warn("target='cuda' but CUDA is not available: the compiled graph (the same training "
                     "graph for cpu and cuda) is left on the CPU; move it with gm.to('cuda')")
    gm.to(device)
    return PassResult(gm, False, {"hooked": hooked, "device": device})
