"""Model classes for the sample checkpoints in this folder.

Plain ``torch.nn`` modules with no dependency on ``deadrelu`` and no relative
imports, so the file can be loaded by path, e.g.
``--arch sample_models/models.py:DigitsMLP``.

The whole-model pickles (``*_full.pt``) were saved while this folder was on
``sys.path`` and this file was imported as the top-level module ``models``, so
the pickles refer to ``models.DigitsMLP`` / ``models.DigitsCNN``. To load them,
put ``sample_models/`` on ``sys.path`` first (``--import-path sample_models``
for the CLI) and use ``torch.load(path, weights_only=False)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DigitsMLP", "DigitsCNN"]


class DigitsMLP(nn.Module):
    """MLP for flattened 8x8 digits: input (N, 64) float in [0, 1], output (N, 10) logits.

    Layout (``depth`` blocks, then a head), all inside ``self.net``::

        net.0 Linear(64, hidden)     net.1 ReLU
        net.2 Linear(hidden, hidden) net.3 ReLU
        ...
        net.{2*depth} Linear(hidden, 10)

    Every ReLU is its own ``nn.ReLU`` module, so forward hooks can tell them apart.
    """

    def __init__(self, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.hidden = hidden
        self.depth = depth
        layers: list[nn.Module] = []
        in_features = 64
        for _ in range(depth):
            layers.append(nn.Linear(in_features, hidden))
            layers.append(nn.ReLU())
            in_features = hidden
        layers.append(nn.Linear(in_features, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1))


class DigitsCNN(nn.Module):
    """Small CNN for 8x8 digits: input (N, 1, 8, 8) float in [0, 1], output (N, 10) logits.

    The second conv block uses a *functional* ``F.relu`` in ``forward`` (no
    ``nn.ReLU`` module), on purpose: tools that only hook ``nn.ReLU`` modules
    miss it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        return self.fc2(x)
