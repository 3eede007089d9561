"""Small real architectures with planted dead/constant units, shared by the fix tests.

Each builder returns ``(model, data, planted)`` where ``planted`` maps an activation
site name to the units planted dead (or stuck at a constant) there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEAD = -1e4  # a bias so negative that the unit never fires


class BasicBlock(nn.Module):
    """torchvision-style residual block: one shared in-place ReLU, used twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _randomize_bn(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def resnet() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    """Dead units inside blocks (after bn1) and one stream channel dead in every block of a stage.

    Stream channel 2 of stage 1 is dead only where the stem's ReLU and every block's
    second ReLU kill it; channel 5 is dead in the stem only (a live channel added to it
    later), which must be kept.
    """
    torch.manual_seed(0)
    m = TinyResNet().eval()
    _randomize_bn(m)
    with torch.no_grad():
        m.layer1[0].bn1.bias[[1, 3]] = DEAD
        m.layer2[0].bn1.bias[[4, 9]] = DEAD
        for bn in (m.bn1, m.layer1[0].bn2, m.layer1[1].bn2):
            bn.bias[2] = DEAD
        m.bn1.bias[5] = DEAD
    x = torch.randn(150, 3, 8, 8)
    return m, x, {"layer1.0.relu": [1, 3], "layer2.0.relu": [4, 9],
                  "relu": [2], "layer1.0.relu#1": [2], "layer1.1.relu#1": [2]}


class FFN(nn.Module):
    """Transformer-style feed-forward with a ReLU and a residual + LayerNorm around it."""

    def __init__(self, d: int = 16, h: int = 48) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(h, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.fc2(self.act(self.fc1(x))))


def transformer() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    """An ``nn.TransformerEncoder`` (functional F.relu in its FFN)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 48, dropout=0.0, batch_first=True)
    m = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    with torch.no_grad():
        m.layers[0].linear1.bias[[0, 7, 30]] = DEAD
        m.layers[1].linear1.bias[[11]] = DEAD
    x = torch.randn(120, 6, 16)
    return m, x, {"layers.0:relu": [0, 7, 30], "layers.1:relu": [11]}


class GatedMLP(nn.Module):
    """ReGLU feed-forward: ``down(relu(gate(x)) * up(x))``."""

    def __init__(self, d: int = 12, h: int = 32) -> None:
        super().__init__()
        self.gate = nn.Linear(d, h)
        self.up = nn.Linear(d, h)
        self.down = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.gate(x)) * self.up(x))


def gated() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    torch.manual_seed(0)
    m = GatedMLP().eval()
    with torch.no_grad():
        m.gate.bias[[2, 5, 17]] = DEAD
    return m, torch.randn(200, 12), {"<model>:relu": [2, 5, 17]}


class ConvNet(nn.Module):
    """conv → BN → ReLU → pool → flatten → Linear → ReLU → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 4 * 4, 20)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc2(self.relu2(self.fc1(torch.flatten(x, 1))))


def convnet() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    torch.manual_seed(0)
    m = ConvNet().eval()
    _randomize_bn(m)
    with torch.no_grad():
        m.bn.bias[[1, 6]] = DEAD
        m.fc1.bias[[3]] = DEAD
    return m, torch.randn(150, 1, 8, 8), {"relu": [1, 6], "relu2": [3]}


def mobilenet() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    """Inverted residual: 1x1 expand → BN → ReLU6 → depthwise 3x3 → BN → ReLU6 → 1x1 project → BN.

    Expansion channel 3 is dead (0) and channel 10 is stuck at 6 (saturated everywhere);
    the 1x1 projection (no bias, no padding) takes their constants.
    """
    torch.manual_seed(0)
    c, e = 8, 24
    m = nn.Sequential(
        nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.ReLU6(inplace=True),
        nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e), nn.ReLU6(inplace=True),
        nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c),
    ).eval()
    _randomize_bn(m)
    with torch.no_grad():
        m[1].bias[3] = DEAD
        m[1].bias[10] = -DEAD
    return m, torch.randn(150, c, 6, 6), {"2": [3, 10]}


class Inception(nn.Module):
    """Two branches concatenated along channels, read by a 1x1 conv (channel offsets)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 1)
        self.mix = nn.Conv2d(11, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1))


def inception() -> tuple[nn.Module, torch.Tensor, dict[str, list[int]]]:
    torch.manual_seed(0)
    m = Inception().eval()
    with torch.no_grad():
        m.a.bias[4] = DEAD
        m.b.bias[[0, 3]] = DEAD
    return m, torch.randn(120, 3, 6, 6), {"<model>:relu": [4], "<model>:relu#1": [0, 3]}


class TiedEmbedding(nn.Module):
    """An embedding whose weight is also the head's: one parameter, two state_dict names."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.norm = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.embed(x))))
