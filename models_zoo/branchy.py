"""A model torch.fx cannot trace: a data-dependent ``if`` on a tensor value (a gate that skips a
refinement block when the features are already small), as research code often writes it.
siftc captures it through torch.export's draft export, which keeps the branch taken at the
example inputs and says so in the report."""
from __future__ import annotations

from torch import nn


class GatedMLP(nn.Module):
    def __init__(self, d_in=32, hidden=64, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.refine = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.fc1(x))
        if h.norm() > 1.0:                 # data-dependent: fx cannot trace this
            h = h + self.refine(h)
        return self.head(self.act(self.fc2(h)))
