"""lower-train: the training form of a compiled graph (targets cpu and cuda).

Weights are already zero where masked (masks pass), so the forward has no mask multiply and
reads the weight directly. Every masked module gets a forward pre-hook that, on each forward
with autograd on, makes sure its weight carries a gradient hook returning ``grad * mask``.
Installing the tensor hook from a module hook (rather than once) keeps it alive through
``copy.deepcopy``, pickling and ``load_state_dict``, which drop or replace tensor hooks.
The gradient *arriving* at the hook is the dense gradient (SPEC.md, "Sparse training"), which
is what RigL reads. Training graphs stay dense-with-zeros on CUDA too: DST needs that dense
gradient, which a sparse kernel would not produce.
"""
from __future__ import annotations

import weakref

import torch

from .registry import PassResult, register


class GradMask:
    """Tensor hook: the gradient of a masked weight, with masked positions zeroed.

    When the DST runtime sets ``module._siftc_dense_grad_sink`` (a callable), the dense gradient
    is handed to it first: that is how RigL reads it on the step before a mask update.
    """

    def __init__(self, module):
        self.module = module

    def __call__(self, grad):
        sink = getattr(self.module, "_siftc_dense_grad_sink", None)
        if sink is not None:
            sink(grad)
        return grad * self.module.weight_mask


class InstallGradMask:
    """Forward pre-hook that (re)installs GradMask on the module's current weight tensor.

    It remembers the hooked tensor by weak reference (deepcopy keeps weakrefs as they are, so a
    copy sees a new weight and hooks it), never by an attribute on the Parameter, which
    torch.save would pickle.
    """

    def __init__(self):
        self.hooked = None

    def __call__(self, module, args):
        w = module.weight
        if not (torch.is_grad_enabled() and w.requires_grad):
            return None
        if self.hooked is not None and self.hooked() is w:
            return None
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return None
        w.register_hook(GradMask(module))
        self.hooked = weakref.ref(w)
        return None


def install(gm) -> int:
    count = 0
    for _, mod in gm.named_modules():
        if isinstance(getattr(mod, "weight_mask", None), torch.Tensor):
            if not any(isinstance(h, InstallGradMask) for h in mod._forward_pre_hooks.values()):
                mod.register_forward_pre_hook(InstallGradMask())
            count += 1
    return count


def strip(model) -> None:
    """Undo ``install`` and drop the masks, in place: a plain model of the same shapes and weights
    (what ONNX export and the dense baseline of ``siftc bench dst`` need)."""
    for mod in model.modules():
        for k, h in list(mod._forward_pre_hooks.items()):
            if isinstance(h, InstallGradMask):
                del mod._forward_pre_hooks[k]
        mod._buffers.pop("weight_mask", None)


@register("lower-train", "zero-filled weights + gradient-mask hooks (no mask multiply in forward); move to target")
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
