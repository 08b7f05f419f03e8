"""Masks as the runtime sees them: drawing an exact mask, keeping gradients masked, removing it all.

- ``exact_mask``: a boolean mask with exactly round(density * numel) True entries at seeded
  uniform positions (the masks pass draws every unstructured mask with it); ``random_bytes``
  draws its keys.
- ``GradMask`` / ``InstallGradMask`` / ``install``: every masked weight's ``.grad`` is masked in
  place by a post-accumulate-grad hook, once per backward, after accumulation and before any
  optimizer or DDP reducer reads it. The hook is installed at once on every masked weight (so
  code that never runs the eager module forward, such as ``torch.compile(gm)`` before any eager
  step, still sees masked gradients) and re-installed by a forward pre-hook on the module's
  current weight tensor (``copy.deepcopy``, pickling and ``load_state_dict`` drop or replace
  tensor hooks) and by the GraphModule's deepcopy hook.
- Cost: multiplying by a bool mask converts it to float element by element, ~10x slower on CPU
  than the multiply itself (measured: 20 ms vs 1.8 ms for 9M entries, 1 thread), so the hook keeps
  a copy of the mask in the gradient's dtype, rebuilt only when the mask changed (its version
  counter moved or it was replaced): one weight-sized buffer per masked layer while training,
  none in inference. The gradient is never copied.
- The dense gradient RigL needs is read by the DST runtime through its own (pre-accumulate)
  tensor hook, registered only on the step before a mask update (docs/method.md, "Sparse training").
- ``strip``: undo all of it, for ONNX export and dense baselines.

The lower-train pass installs these; siftc.DST and the ONNX exporter use them. They live in core
because a pass and the runtime both need them.
"""
from __future__ import annotations

import math
import weakref
import zlib

import numpy as np
import torch

from siftc.core.mask_api import is_masked, mask_of, remove_mask

def exact_count(n: int, density: float) -> int:
    """The non-zeros a mask of n entries at ``density`` has: round(density n), at least 1 unless 0."""
    return min(n, max(1, round(density * n))) if density > 0 else 0


def layer_generator(seed: int, path: str) -> torch.Generator:
    """The generator one layer's mask and deferred weights are drawn from: policy seed and the
    crc32 of the module path, so a layer's draws depend on neither layer order nor threads."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(path.encode()))


def random_bytes(n: int, generator: torch.Generator) -> torch.Tensor:
    """n independent uniform 7-bit keys (uint8 in [0, 128)), drawn 8 per 64-bit random number.

    torch's ``random_`` on int64 fills [0, 2**63): 63 uniform bits, so each of the 8 bytes is
    masked to 7 bits to keep every byte uniform. One 64-bit draw per 8 keys is ~8x cheaper than
    ``torch.rand`` (measured: 13 ms vs 59 ms for 9.4M keys, 1 thread), the largest cost of drawing
    a mask.
    """
    words = torch.empty(-(-n // 8), dtype=torch.int64).random_(generator=generator)
    return words.view(torch.uint8)[:n].bitwise_and_(0x7F)


def exact_mask(shape, density: float, generator: torch.Generator, out: torch.Tensor | None = None) -> torch.Tensor:
    """A bool mask with exactly ``exact_count(numel, density)`` True entries, every such subset
    equally likely. Method: a 7-bit key per entry; the keys below the level where the k-th
    smallest falls are taken, and the rest of k is drawn uniformly (randperm) from the entries
    tied at that level. The procedure treats every position alike, so the subset it returns is
    uniform over k-subsets; the coarse keys only make the tied set larger (~n/128 entries).

    Written into ``out`` (a contiguous CPU bool tensor of ``shape``, e.g. the layer's mask
    buffer) when given. The scans run in numpy, whose compare and ``flatnonzero`` are
    4-7x faster than torch's on CPU (measured: 9 ms vs 61 ms for the non-zeros of a 9.4M mask,
    1 thread); the draws are torch's, so the mask is the one the torch formulation gives.
    """
    n = math.prod(shape)
    k = exact_count(n, density)
    mask = out if out is not None else torch.empty(shape, dtype=torch.bool)
    if tuple(mask.shape) != tuple(shape) or mask.dtype != torch.bool or mask.device.type != "cpu" \
            or not mask.is_contiguous():
        raise ValueError(f"exact_mask: out must be a contiguous CPU bool tensor of shape {tuple(shape)}, "
                         f"got {mask.dtype} {tuple(mask.shape)} on {mask.device}")
    if k == 0 or k == n:
        return mask.fill_(k == n)
    keys = random_bytes(n, generator)
    flat, key_np = mask.view(-1).numpy(), keys.numpy()
    # the level: the first key value whose count of keys at or below it reaches k, i.e.
    # below(level) < k <= below(level) + tied(level). Keys are uniform on [0, 128), so it is
    # almost always floor(128 k / n); a step either way costs one more scan of the keys, and
    # patches ``flat`` (keys < level) at the ~n/128 tied positions only. Same level as a full
    # histogram gives, at a third of its cost (measured 11 ms for torch.bincount of 9.4M keys).
    level = min(127, 128 * k // n)
    np.less(key_np, level, out=flat)
    below = int(np.count_nonzero(flat))
    tied = np.flatnonzero(key_np == level)
    while below >= k:                                   # too high: step down
        level -= 1
        tied = np.flatnonzero(key_np == level)
        flat[tied] = False
        below -= tied.size
    while below + tied.size < k:                        # too low: step up
        flat[tied] = True
        below += tied.size
        level += 1
        tied = np.flatnonzero(key_np == level)
    flat[tied[torch.randperm(tied.size, generator=generator)[:k - below].numpy()]] = True
    # numpy's writes do not move torch's version counter, which count_mask and the gradient
    # hook's mask copy key on: move it, as a torch write would have
    torch.autograd.graph.increment_version(mask)
    _remember_count(mask, k)          # exactly k by construction (verify counts for itself)
    return mask


def fill_kept_(weight: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> None:
    """``weight.masked_scatter_(mask, values)``: the kept entries, in order, get ``values``.

    For contiguous CPU tensors whose dtype numpy has, through numpy's ``flatnonzero`` and torch's
    ``index_copy_`` (measured 19 ms vs 43 ms for masked_scatter_ on 9.4M entries, 1 thread).
    """
    if numpy_ok(weight) and numpy_ok(mask) and values.dtype == weight.dtype:
        index = torch.from_numpy(np.flatnonzero(mask.reshape(-1).numpy()))
        weight.view(-1).index_copy_(0, index, values.reshape(-1))
    else:
        weight.masked_scatter_(mask, values)


def numpy_ok(t: torch.Tensor) -> bool:
    """``t.numpy()`` views ``t`` as it is: a contiguous CPU tensor of a dtype numpy has (not bf16)."""
    return t.device.type == "cpu" and t.is_contiguous() and t.dtype in _NUMPY_DTYPES


_NUMPY_DTYPES = (torch.bool, torch.float32, torch.float64, torch.float16)


_COUNTS: dict = {}     # id(mask) -> (weak reference, version, non-zeros)


def count_mask(mask: torch.Tensor) -> int:
    """``count_nonzero(mask)``, counted again only when the mask changed (its version counter
    moved): the FLOP annotation and the pass recorder read every mask after every pass, which
    was ~0.4 s of a resnet50 compile (1 thread). The verify pass counts for itself."""
    hit = _COUNTS.get(id(mask))
    if hit is not None and hit[0]() is mask and hit[1] == mask._version:
        return hit[2]
    return _remember_count(mask, int(torch.count_nonzero(mask)))


def _remember_count(mask: torch.Tensor, count: int) -> int:
    """Cache ``count`` as the non-zeros of ``mask`` at its current version."""
    if len(_COUNTS) > 4096:      # forget masks that no longer exist
        for key in [k for k, v in _COUNTS.items() if v[0]() is None]:
            del _COUNTS[key]
    _COUNTS[id(mask)] = (weakref.ref(mask), mask._version, count)
    return count


class GradMask:
    """Post-accumulate-grad hook: zero the masked entries of a weight's ``.grad`` in place."""

    def __init__(self, module):
        # by weak reference: the hook lives on the weight, which the module holds, and torch does
        # not show post-accumulate-grad hooks to the garbage collector, so a strong reference here
        # kept every compiled model alive (measured: +420 MB per compile + DST cycle)
        self._module = weakref.ref(module)
        self._mask = self._version = self._scale = None

    @property
    def module(self):
        return self._module()

    def __call__(self, param):
        grad = param.grad
        module = self.module
        # a DST capture step under FSDP2 keeps this gradient dense: DST reads and masks the
        # reduced shards before the optimizer step (siftc/runtime/dst.py)
        if grad is not None and module is not None and not getattr(module, "_siftc_capture", False):
            grad.mul_(self.scale(grad))

    def scale(self, like: torch.Tensor) -> torch.Tensor:
        """The mask as 0/1 in ``like``'s dtype and device, rebuilt only when the mask changed."""
        s = self._scale
        if not self.current() or s.dtype != like.dtype or s.device != like.device:
            mask = mask_of(self.module)
            s = mask.to(device=like.device, dtype=like.dtype)
            self._mask, self._version, self._scale = mask, mask._version, s
        return s

    def current(self) -> bool:
        """Whether the cached copy matches the mask as it is now."""
        mask = mask_of(self.module)
        return self._scale is not None and mask is self._mask and mask._version == self._version

    def patch(self, index: torch.Tensor) -> None:
        """The mask, current before, has just changed at these flat positions only (a DST
        update): patch the copy there instead of converting the whole mask again."""
        mask = mask_of(self.module)
        flat = self._scale.view(-1)
        flat[index] = mask.reshape(-1)[index].to(flat.dtype)
        self._mask, self._version = mask, mask._version


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
        if not has_grad_mask(module):
            w.register_post_accumulate_grad_hook(GradMask(module))
        self.hooked = weakref.ref(w)


def grad_mask_of(module) -> GradMask | None:
    """The GradMask hook on the module's current weight, if it has one."""
    hooks = getattr(module.weight, "_post_accumulate_grad_hooks", None) or {}
    return next((h for h in hooks.values() if isinstance(h, GradMask) and h.module is module), None)


def has_grad_mask(module) -> bool:
    """Whether the module's current weight carries its GradMask hook."""
    return grad_mask_of(module) is not None


def install(gm) -> int:
    """Hook every masked weight now and keep it hooked (module pre-hooks, deepcopy hook)."""
    count = 0
    for _, mod in gm.named_modules():
        # a masked module whose weight is not a parameter (sparse kernels: only the kept values
        # are trained, siftc/core/train_kernels.py) has no dense gradient to mask
        if is_masked(mod) and isinstance(mod._parameters.get("weight"), torch.nn.Parameter):
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


def shared_copy(model):
    """A copy of ``model``'s module tree that shares every parameter and buffer with it, for work
    that reads weights and writes none (ONNX export of a large model would otherwise hold each
    weight twice more). Nothing of the gradient masking is installed on it: a copy's hook on a
    shared weight would outlive the copy and mask every gradient twice."""
    import copy
    hooks = getattr(model, "_deepcopy_hooks", None)
    had = hooks is not None and install in hooks
    if had:
        hooks.remove(install)
    try:
        out = copy.deepcopy(model, memo={id(t): t for t in (*model.parameters(), *model.buffers())})
    finally:
        if had:
            hooks.append(install)
    for mod in out.modules():
        for k, h in list(mod._forward_pre_hooks.items()):
            if isinstance(h, InstallGradMask):
                del mod._forward_pre_hooks[k]
    return out


def strip(model, tensor_hooks: bool = True) -> None:
    """Undo ``install`` and drop the masks, in place: a plain model of the same shapes and weights
    (what ONNX export and the dense baseline of ``siftc bench dst`` need). ``tensor_hooks=False``
    leaves the weights' own gradient hooks alone (a module tree that shares its weights with a
    model still training)."""
    for mod in model.modules():
        for k, h in list(mod._forward_pre_hooks.items()):
            if isinstance(h, InstallGradMask):
                del mod._forward_pre_hooks[k]
        w = getattr(mod, "weight", None) if tensor_hooks else None
        hooks = getattr(w, "_post_accumulate_grad_hooks", None) if isinstance(w, torch.Tensor) else None
        for k, h in list((hooks or {}).items()):
            if isinstance(h, GradMask):
                del hooks[k]
        remove_mask(mod)
    if install in getattr(model, "_deepcopy_hooks", ()):
        model._deepcopy_hooks.remove(install)
