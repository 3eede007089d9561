"""The model the monitor-integration tests train (Lightning, transformers, wandb, loggers)."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """6 → 10 (ReLU) → 2, with half of the hidden units planted dead (bias −1e4)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 10)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(10, 2)
        with torch.no_grad():
            self.fc1.bias[:5] = -1e4  # half of the layer planted dead

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
