"""The mask API: which weights of a compiled model are masked, and their masks.

A masked weight is a parameter ``<name>`` of a module with a bool buffer ``<name>_mask`` beside it
(``weight`` -> ``weight_mask``), True where the weight is kept. Masks are buffers so that
``state_dict``, checkpoints and DDP's buffer broadcast carry them; the weight holds zeros where
its mask is False. A sparse training or inference kernel (siftc/core/train_kernels.py,
siftc/core/kernels.py) keeps the same buffer as its index structure, without a dense parameter.

Every part of siftc that needs to know what is masked asks here (``masked_weights``,
``mask_of``, ``is_masked``, ``add_mask``): the masks pass, verify, DST, checkpoints, ONNX export,
the kernels, the recorder, the report and the Hugging Face save. No other module spells the
buffer's name (tests/test_layers.py checks it), so the representation can change in one place.
A module may have several masked weights (one record each).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

SUFFIX = "_mask"


def buffer_name(name: str = "weight") -> str:
    """The mask buffer's name of parameter ``name``."""
    return name + SUFFIX


@dataclass(frozen=True)
class MaskedWeight:
    """One masked weight of a compiled model."""
    path: str                 # module path, e.g. "layer1.0.conv1.branches.2"
    name: str                 # parameter name on that module, e.g. "weight"
    module: nn.Module
    mask: torch.Tensor        # bool, the weight's shape; True = kept

    @property
    def qualname(self) -> str:
        """``path.name`` as in ``named_parameters`` (and state dicts)."""
        return f"{self.path}.{self.name}" if self.path else self.name

    @property
    def parameter(self):
        """The dense parameter, or None where a sparse kernel holds only the kept values."""
        p = self.module._parameters.get(self.name)
        return p if isinstance(p, nn.Parameter) else None


def mask_of(module: nn.Module, name: str = "weight"):
    """The mask of ``module``'s parameter ``name``, or None when it is not masked."""
    mask = module._buffers.get(buffer_name(name)) if hasattr(module, "_buffers") else None
    return mask if isinstance(mask, torch.Tensor) else None


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    return mask_of(module, name) is not None


def masked_names(module: nn.Module) -> list:
    """Names of ``module``'s own masked parameters (in buffer order)."""
    return [b[:-len(SUFFIX)] for b, t in module._buffers.items()
            if b.endswith(SUFFIX) and isinstance(t, torch.Tensor)] if hasattr(module, "_buffers") else []


def masked_weights(gm: nn.Module) -> list:
    """[MaskedWeight] of every masked weight under ``gm``, in module order."""
    out = []
    for path, module in gm.named_modules():
        for name in masked_names(module):
            out.append(MaskedWeight(path, name, module, mask_of(module, name)))
    return out


def masked_modules(gm: nn.Module) -> dict:
    """{module path: module} of the modules with a masked ``weight``."""
    return {path: m for path, m in gm.named_modules() if is_masked(m)}


def add_mask(module: nn.Module, name: str = "weight", mask: "torch.Tensor | None" = None) -> torch.Tensor:
    """Give ``module``'s parameter ``name`` a mask buffer (all True unless ``mask`` is given)."""
    if mask is None:
        mask = torch.ones_like(getattr(module, name), dtype=torch.bool)
    module.register_buffer(buffer_name(name), mask)
    return mask


def remove_mask(module: nn.Module, name: str = "weight") -> None:
    module._buffers.pop(buffer_name(name), None)


def is_mask_buffer(qualname: str) -> bool:
    """Whether a state-dict / tensor name is a mask buffer's."""
    return qualname.rpartition(".")[2].endswith(SUFFIX)


def mask_name_of(param_qualname: str) -> str:
    """The mask buffer's full name of a parameter's full name (``a.b.weight`` -> ``a.b.weight_mask``)."""
    return param_qualname + SUFFIX
