"""An Inception-like CNN (Szegedy et al. 2015), written as torchvision's inception.py writes its
blocks: ``BasicConv2d`` (conv + BN + ReLU) branches joined by ``torch.cat`` along channels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionBlock(nn.Module):
    """1x1 | 1x1 -> 3x3 | 3x3 avg-pool -> 1x1, concatenated (InceptionA without the 5x5 branch)."""

    def __init__(self, cin, c1, c3_reduce, c3, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, c3_reduce, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c3_reduce, c3, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch3x3, branch_pool], 1)


class InceptionTiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, padding=1)
        self.Mixed_5b = InceptionBlock(32, 32, 24, 32, 16)        # -> 80 channels
        self.Mixed_5c = InceptionBlock(80, 48, 32, 48, 32)        # -> 128 channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.Conv2d_1a_3x3(x)
        x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = self.Mixed_5c(self.Mixed_5b(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))
