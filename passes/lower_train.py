"""lower-train: the training form of a compiled graph (targets cpu and cuda).

Weights are already zero where masked (masks pass), so the forward has no mask multiply and
reads the weight directly. Every masked weight gets a gradient hook returning ``grad * mask``
at once (so code that never runs the eager module forward, such as ``torch.compile(gm)`` before
any eager step, still sees masked gradients), and every masked module a forward pre-hook that,
on each eager forward with autograd on, re-installs it on the module's current weight tensor:
``copy.deepcopy``, pickling and ``load_state_dict`` drop or replace tensor hooks. A deepcopy of
the GraphModule re-installs them at once too (``install`` runs as its deepcopy hook).
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

    def __getstate__(self):        # torch.save of the model: the weak reference does not pickle,
        return {"hooked": None}    # and a loaded model re-hooks its own weights anyway

    def __call__(self, module, args):
        # Under torch.compile this runs too: dynamo graph-breaks on the hook registration and runs
        # it eagerly, so a model whose hooks were lost (torch.load) is re-hooked before its first
        # compiled backward (measured: 83,671 non-zero masked weights after 3 steps without it)
        if not torch.is_grad_enabled() or torch.jit.is_tracing():
            return None
        self.ensure(module)
        return None

    def ensure(self, module) -> None:
        """Hook the module's current weight unless it already is."""
        w = module.weight
        if not w.requires_grad or (self.hooked is not None and self.hooked() is w):
            return
        # torch.save pickles a parameter's hooks: a loaded weight may carry its GradMask already
        if not has_grad_mask(module):
            w.register_hook(GradMask(module))
        self.hooked = weakref.ref(w)


def has_grad_mask(module) -> bool:
    """Whether the module's current weight carries its GradMask hook."""
    return any(isinstance(h, GradMask) and h.module is module for h in (module.weight._backward_hooks or {}).values())


def install(gm) -> int:
    """Hook every masked weight now and keep it hooked (module pre-hooks, deepcopy hook)."""
    count = 0
    for _, mod in gm.named_modules():
        if isinstance(getattr(mod, "weight_mask", None), torch.Tensor):
            hook = next((h for h in mod._forward_pre_hooks.values() if isinstance(h, InstallGradMask)), None)
            if hook is None:
                hook = InstallGradMask()
                mod.register_forward_pre_hook(hook)
            hook.ensure(mod)
            count += 1
    if isinstance(gm, torch.fx.GraphModule) and hasattr(gm, "_deepcopy_hooks"):
        if install not in gm._deepcopy_hooks:
            gm._deepcopy_hooks.append(install)
    return count


def strip(model) -> None:
    """Undo ``install`` and drop the masks, in place: a plain model of the same shapes and weights
    (what ONNX export and the dense baseline of ``siftc bench dst`` need)."""
    for mod in model.modules():
        for k, h in list(mod._forward_pre_hooks.items()):
            if isinstance(h, InstallGradMask):
                del mod._forward_pre_hooks[k]
        mod._buffers.pop("weight_mask", None)
    if install in getattr(model, "_deepcopy_hooks", ()):
        model._deepcopy_hooks.remove(install)


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
