"""Large-architecture fixtures built in plain torch (no torchvision, no download).

``resnet50_like``: the ResNet-50 layout (bottleneck blocks 3-4-6-3, widths 64..2048,
one ``nn.ReLU`` module reused three times per block as torchvision does), so a scan
sees 49 ReLU call sites and about 22,700 channels. ``deep_mlp``: many ReLU layers
for the "100+ activation sites" cases.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, inp: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(inp, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.down = (nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                     if stride != 1 or inp != out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50Like(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        layers, inp = [], 64
        for i, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)):
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(inp, width, 2 if b == 0 and i > 0 else 1))
                inp = width * 4
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(inp, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet50_like() -> nn.Module:
    return ResNet50Like()


def deep_mlp(depth: int = 120, width: int = 32, dead_every: int = 10) -> nn.Module:
    """``depth`` Linear+ReLU layers; every ``dead_every``-th layer has its first quarter of
    units planted dead (bias -1000)."""
    mods: list[nn.Module] = []
    for i in range(depth):
        lin = nn.Linear(width, width)
        if i % dead_every == dead_every - 1:
            with torch.no_grad():
                lin.bias[: width // 4] = -1000.0
        mods += [lin, nn.ReLU()]
    return nn.Sequential(*mods)
