"""MLP for 28x28 grayscale digits: 784-256-256-10 with ReLU (SPEC.md's pilot model)."""
from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int = 784, hidden: tuple = (256, 256), num_classes: int = 10):
        super().__init__()
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
