"""Shared pieces of the members: the base class, fresh copies of a layer, sparse-weight marks."""
from __future__ import annotations

import contextlib

import math

import torch
from torch import nn

from siftc.core.mask_api import add_mask, is_masked


class MemberLayer(nn.Module):
    """Base of every rewritten layer. ``member`` names the rule, ``detail`` its size choice."""
    member = "?"

    def __init__(self, original: nn.Module, detail: str):
        super().__init__()
        self.original_repr = repr(original)
        self.detail = detail

    def extra_repr(self) -> str:
        return f"{self.member} of {self.original_repr}: {self.detail}"


def mark_sparse(layer: nn.Module) -> nn.Module:
    """Give ``layer``'s weight an all-True mask (siftc/core/mask_api.py); the masks pass fills it in."""
    add_mask(layer)
    return layer


# A fresh sparse weight is not drawn where it is built: it is zero and carries its Kaiming std
# here, and the masks pass draws only the kept entries (docs/method.md, "Mask init"). At s=0.75
# that is a quarter of the draws; at s=0.9 a tenth (drawing every entry of resnet18's four
# parallel branches was ~0.5 s of a 1 s compile). Any weight still pending when a pass other
# than masks follows is drawn in full (draw_pending_), so no pipeline can leave it zero.
PENDING_STD = "_siftc_init_std"


# Kaiming's fan mode for the weights members draw: fan_in (siftc's default), or fan_out (policy
# init=reference, as the authors' code and torchvision's ResNets). Set around a compile's
# substitute by init_mode.
_FAN = {"mode": "fan_in"}


@contextlib.contextmanager
def init_mode(policy):
    """Draw the weights built inside with the fan mode policy ``init=`` asks for."""
    before = _FAN["mode"]
    _FAN["mode"] = "fan_out" if policy.init == "reference" else "fan_in"
    try:
        yield
    finally:
        _FAN["mode"] = before


def kaiming_std(shape) -> float:
    """Kaiming-normal std with the ReLU gain: sqrt(2 / fan), fan_in = prod(shape[1:]) or (init=reference)
    fan_out = shape[0] x prod(shape[2:]), torch.nn.init's fans."""
    fan = math.prod(shape[1:]) if _FAN["mode"] == "fan_in" else shape[0] * math.prod(shape[2:])
    return math.sqrt(2.0 / max(1, fan))


def mark_pending(layer: nn.Module) -> nn.Module:
    """Record the Kaiming std of ``layer``'s (zero) weight for the masks pass to draw the kept entries."""
    setattr(layer, PENDING_STD, kaiming_std(tuple(layer.weight.shape)))
    return layer


def defer_init(layer: nn.Module) -> nn.Module:
    """Zero ``layer.weight`` and mark it pending (mark_pending)."""
    with torch.no_grad():
        layer.weight.zero_()
    return mark_pending(layer)


def pending(root: nn.Module) -> list:
    """(qualname, module) of every weight whose init is deferred."""
    return [(n, m) for n, m in root.named_modules() if PENDING_STD in m.__dict__]


def take_pending_std(module: nn.Module):
    """The deferred Kaiming std of ``module`` (None if its weight was drawn), now no longer pending."""
    return module.__dict__.pop(PENDING_STD, None)


def draw_pending_(root: nn.Module, seed: int) -> int:
    """Draw every still-deferred weight in full (seeded per module path); returns how many."""
    from siftc.core.masking import layer_generator
    todo = pending(root)
    with torch.no_grad():
        for q, m in todo:
            g = layer_generator(seed, q)
            values = torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype)
            m.weight.copy_(values.mul_(take_pending_std(m)))
    return len(todo)


def sparse_children(module: nn.Module):
    """(qualname, submodule) of every masked weight module under ``module``."""
    return [(n, m) for n, m in module.named_modules()
            if is_masked(m)]


@contextlib.contextmanager
def seeded_init(model: nn.Module, seed: int):
    """Draw every new weight inside from torch's generators seeded with ``seed``, and leave the
    caller's random state as it was: the same model, policy and seed give the same weights (not
    only the same masks), and compiling does not move the user's data-order randomness."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def kaiming_(layer: nn.Module) -> nn.Module:
    """Kaiming-normal init of the full dense weight shape (docs/method.md, "Mask init")."""
    nn.init.kaiming_normal_(layer.weight, mode=_FAN["mode"], nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def new_like(layer: nn.Module, in_features=None, out_features=None, *, kernel=True, bias=None, sparse=False):
    """A fresh nn.Linear / nn.ConvNd / nn.ConvTransposeNd like ``layer`` with other in/out sizes.

    For a conv, ``kernel=False`` makes a 1x1, stride-1, unpadded (non-transposed) conv of the same
    dimensionality (factorized/doped V). ``sparse=True`` marks it sparse and defers its weight
    init to the masks pass (only the kept entries are drawn).
    """
    w = layer.weight
    kw = dict(device=w.device, dtype=w.dtype)
    has_bias = (layer.bias is not None) if bias is None else bias
    # uninitialised (_uninitialised): the default (kaiming-uniform) init would be overwritten at
    # once, and drawing it costs as much as the real init on large layers
    if isinstance(layer, nn.Linear):
        new = _uninitialised(nn.Linear, in_features or layer.in_features, out_features or layer.out_features,
                             bias=has_bias, **kw)
    elif isinstance(layer, nn.modules.conv._ConvNd):
        cin, cout = in_features or layer.in_channels, out_features or layer.out_channels
        # a grouped conv's member keeps its groups: every conv it makes is per group (grouped=apply)
        if kernel:
            extra = dict(output_padding=layer.output_padding) if layer.transposed else {}
            new = _uninitialised(type(layer), cin, cout, layer.kernel_size, layer.stride, layer.padding,
                                 dilation=layer.dilation, groups=layer.groups, bias=has_bias,
                                 padding_mode=layer.padding_mode, **extra, **kw)
        else:
            new = _uninitialised(_CONV_BY_DIMS[len(layer.kernel_size)], cin, cout, 1, groups=layer.groups,
                                 bias=has_bias, **kw)
    else:
        raise TypeError(f"members rewrite nn.Linear and convolutions, not {type(layer).__name__}")
    if sparse:
        if new.bias is not None:
            nn.init.zeros_(new.bias)
        return mark_sparse(defer_init(new))
    return kaiming_(new)


_CONV_BY_DIMS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _uninitialised(cls, *args, device=None, dtype=None, **kwargs) -> nn.Module:
    """``cls(*args, **kwargs)`` with its parameters allocated on ``device`` but not initialised:
    torch.nn.utils.skip_init's method (built on the meta device, where init draws nothing), with
    the tensors put in place directly instead of through its signature check and the generic
    ``to_empty`` (0.22 ms instead of 0.52 ms a conv: resnet50's 208 parallel branches, 60 ms)."""
    module = cls(*args, device="meta", dtype=dtype, **kwargs)
    for name, p in module._parameters.items():
        if p is not None:
            module._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device),
                                                    requires_grad=p.requires_grad)
    for name, b in module._buffers.items():
        if b is not None:
            module._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=device)
    return module


_BATCHNORM_BY_DIMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def fan(layer: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) with a conv's kernel counted in d_in (docs/method.md: kk*f_in in place of d_in).
    For a grouped conv, those of one group: the member's sizes are chosen per group."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    g = layer.groups
    return layer.in_channels // g * math.prod(layer.kernel_size), layer.out_channels // g


def groups_of(layer: nn.Module) -> int:
    return getattr(layer, "groups", 1) if isinstance(layer, nn.modules.conv._ConvNd) else 1


def in_size(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


NO_NORM_NOTE = "no inserted norms (1x1 spatial output: BatchNorm cannot train at batch 1)"


def one_by_one(layer: nn.Module, out_shape) -> bool:
    """A conv whose output is 1x1 spatial (squeeze-excite): a BatchNorm after it sees one value
    per channel at batch 1 and cannot train there, while the original layer can."""
    return (isinstance(layer, nn.modules.conv._ConvNd) and isinstance(out_shape, tuple) and len(out_shape) > 2
            and all(isinstance(d, int) for d in out_shape) and math.prod(out_shape[2:]) == 1)


def norm_for(layer: nn.Module, channels: int, out_shape=None) -> nn.Module:
    """The norm a member inserts: BatchNorm1d/2d/3d after a conv, LayerNorm after a linear;
    nothing (Identity) after a conv with a 1x1 spatial output (``one_by_one``)."""
    if one_by_one(layer, out_shape):
        return nn.Identity()
    w = layer.weight
    if isinstance(layer, nn.modules.conv._ConvNd):
        return _BATCHNORM_BY_DIMS[len(layer.kernel_size)](channels, device=w.device, dtype=w.dtype)
    return nn.LayerNorm(channels, device=w.device, dtype=w.dtype)
