"""Training recipes on the real data in ../shared/data: model, data, optimizer and metric.

Narrow widths and small batches so each trains in minutes on 2 CPU cores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import data
from .gpt import gpt_tiny
from .mlp import MLP, SmallCNN
from .resnet import resnet18_cifar


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str                      # "classify" (metric: test accuracy) | "lm" (metric: val perplexity)
    model: Callable                # () -> nn.Module
    load: Callable                 # (data_dir) -> (train, test) tensors
    batch_size: int
    lr: float
    optimizer: str                 # "sgd" (momentum 0.9, nesterov) | "adamw"
    weight_decay: float = 5e-4
    block: int = 64                # context length for "lm"


def _mnist(root):
    return data.mnist("train", root), data.mnist("test", root)


def _cifar(root):
    return data.cifar10("train", root), data.cifar10("test", root)


def _shakespeare(root):
    train, val, _ = data.shakespeare(root)
    return train, val


RECIPES = {
    "mnist_mlp": Recipe("mnist_mlp", "classify", lambda: MLP(), _mnist, 64, 0.05, "sgd"),
    "mnist_cnn": Recipe("mnist_cnn", "classify", lambda: SmallCNN(width=16), _mnist, 64, 0.05, "sgd"),
    "cifar_resnet18": Recipe("cifar_resnet18", "classify", lambda: resnet18_cifar(width=16), _cifar, 64, 0.05, "sgd"),
    "shakespeare_gpt": Recipe("shakespeare_gpt", "lm", lambda: gpt_tiny(block_size=64), _shakespeare, 32, 3e-3,
                              "adamw", weight_decay=0.1),
}


def get(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}") from None


def make_optimizer(recipe: Recipe, params, lr=None):
    lr = lr or recipe.lr
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
