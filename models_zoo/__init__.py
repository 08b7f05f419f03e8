"""models_zoo: self-contained reference models for siftc (torchvision does not import here).

    models_zoo.list_models()                     -> names
    models_zoo.create(name, **kw)                -> nn.Module
    models_zoo.example_inputs(name, batch_size)  -> tuple of tensors the model accepts
"""
from __future__ import annotations

import torch

from .bert import bert_tiny
from .branchy import GatedMLP
from .hf_bert import bert_hf_tiny
from .hf_gpt2 import gpt2_tiny
from .inception import InceptionTiny
from .gpt import gpt3_small, gpt_tiny
from .mlp import MLP, SmallCNN
from .mobilenet import MobileNetV2
from .resnet import resnet18, resnet18_cifar, resnet34, resnet50, resnext_tiny
from .vit import vit_tiny

# name -> (factory, input kind, default input size: image side or sequence length)
_MODELS = {
    "mlp": (lambda **kw: MLP(**kw), "digits", 28),
    "mnist_cnn": (lambda **kw: SmallCNN(**kw), "digits", 28),
    "resnet18_cifar": (resnet18_cifar, "image", 32),
    "resnet18": (resnet18, "image", 224),
    "resnet34": (resnet34, "image", 224),
    "resnet50": (resnet50, "image", 224),
    "mobilenet_v2": (lambda **kw: MobileNetV2(**kw), "image", 224),
    "gpt_tiny": (gpt_tiny, "tokens", 64),
    "gpt3_small": (gpt3_small, "tokens", 2048),
    "vit_tiny": (vit_tiny, "image", 32),
    "bert_tiny": (bert_tiny, "tokens", 128),
    # library-style definitions: as torchvision / Hugging Face / research code write them
    "gpt2_tiny": (gpt2_tiny, "tokens", 32),
    "bert_hf_tiny": (bert_hf_tiny, "bert", 32),
    "inception_tiny": (lambda **kw: InceptionTiny(**kw), "image", 32),
    "resnext_tiny": (resnext_tiny, "image", 32),
    "gated_mlp": (lambda **kw: GatedMLP(**kw), "vector", 32),
}
# the library-style models, tested by tests/test_library_models.py (fx or torch.export capture)
LIBRARY = ("gpt2_tiny", "bert_hf_tiny", "inception_tiny", "resnext_tiny", "gated_mlp")


def list_models() -> list[str]:
    return list(_MODELS)


def _entry(name):
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(_MODELS)}") from None


def create(name: str, **kw) -> torch.nn.Module:
    """Build zoo model ``name``; keyword arguments go to its constructor (e.g. n_layer=2)."""
    return _entry(name)[0](**kw)


def example_inputs(name: str, batch_size: int = 2, size: int | None = None, seed: int = 0) -> tuple:
    """Inputs for ``name``: images (B,3,S,S), digits (B,1,28,28) or token ids (B,T); ``size`` = S or T."""
    _, kind, default = _entry(name)
    size = size or default
    g = torch.Generator().manual_seed(seed)
    if kind == "digits":
        return (torch.rand(batch_size, 1, 28, 28, generator=g),)
    if kind == "image":
        return (torch.randn(batch_size, 3, size, size, generator=g),)
    if kind == "vector":
        return (torch.randn(batch_size, size, generator=g),)
    if kind == "bert":     # input_ids, attention_mask (the last quarter padded), token_type_ids
        ids = torch.randint(1, 512, (batch_size, size), generator=g)
        mask = torch.ones(batch_size, size, dtype=torch.long)
        mask[:, size - size // 4:] = 0
        types = torch.zeros(batch_size, size, dtype=torch.long)
        types[:, size // 2:] = 1
        return ids, mask, types
    vocab = {"gpt_tiny": 65, "gpt3_small": 50257, "bert_tiny": 30522, "gpt2_tiny": 256}[name]
    return (torch.randint(0, vocab, (batch_size, size), generator=g),)


__all__ = ["list_models", "create", "example_inputs", "LIBRARY"]
