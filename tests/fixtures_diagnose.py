"""Fixture models for the diagnosis tests: networks built to fail the classic ways, and near misses.

Each builder is seeded and runs in well under a second on one CPU core. Models
whose failure comes from training (too-high learning rate, too much weight
decay) are trained for a few hundred steps on a small synthetic task; the others
have their failure *planted* in the weights, so the test knows exactly which
units are affected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

IN = 16
WIDTH = 64
CLASSES = 4


def task(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4-class problem on standard-normal 16-d inputs (labels from a random linear map)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN, generator=g)
    y = (x @ torch.randn(IN, CLASSES, generator=g)).argmax(1)
    return x, y


def mlp(width: int = WIDTH, depth: int = 3, act: Callable[[], nn.Module] = nn.ReLU,
        din: int = IN, dout: int = CLASSES, seed: int = 0) -> nn.Sequential:
    """Linear/activation pairs then a Linear head, with PyTorch's default init."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    d = din
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, dout))
    return nn.Sequential(*layers)


class SGD:
    """Plain SGD, as ``torch.optim.SGD`` without momentum.

    The fixtures use these two small optimizers instead of ``torch.optim``, whose first
    use imports ``torch._dynamo`` (several seconds on a small CPU).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float) -> None:
        self.params = list(params)
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


class AdamW(SGD):
    """``torch.optim.AdamW`` (betas 0.9/0.999, eps 1e-8, decoupled weight decay); Adam when it is 0."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.weight_decay = weight_decay
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            p.mul_(1 - self.lr * self.weight_decay)
            m.mul_(0.9).add_(p.grad, alpha=0.1)
            v.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(1e-8), value=-self.lr)


def train(model: nn.Module, opt: SGD, steps: int = 300, batch: int = 64,
          data: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Module:
    """Cross-entropy training on :func:`task` with a seeded batch order."""
    x, y = data if data is not None else task()
    g = torch.Generator().manual_seed(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is fastest, and the result is reproducible
    try:
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=g)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


# -- trained the classic wrong ways ---------------------------------------------------------------

def high_lr(lr: float = 2.0) -> nn.Module:
    """SGD with a far too large learning rate: hidden units die after big updates."""
    model = mlp()
    return train(model, SGD(model.parameters(), lr=lr))


def healthy() -> nn.Module:
    """Adam at 1e-3: a normally trained model."""
    model = mlp()
    return train(model, AdamW(model.parameters(), lr=1e-3))


def heavy_weight_decay(weight_decay: float = 2.0) -> nn.Module:
    """AdamW with a huge decoupled weight decay: dead units' weights decay to zero."""
    model = mlp()
    return train(model, AdamW(model.parameters(), lr=1e-2, weight_decay=weight_decay))


def deep_narrow(width: int = 3, depth: int = 20, seed: int = 0, he: bool = False) -> nn.Module:
    """A deep, narrow ReLU stack, untrained (born dead with high probability, Lu et al. 2019)."""
    model = mlp(width=width, depth=depth, seed=seed)
    if he:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    return model.eval()


def sigmoid_net(std: float | None = 5.0) -> nn.Module:
    """A sigmoid MLP; ``std`` set: weights drawn from N(0, std²) (a huge init), else default init."""
    model = mlp(act=nn.Sigmoid)
    if std is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, std)
    return model.eval()


def unnormalized(x: torch.Tensor, scale: float = 10.0, offset: float = 100.0) -> torch.Tensor:
    """Raw-looking features: ``x * scale + offset`` (an offset well beyond the spread kills units)."""
    return x * scale + offset


# -- planted failures -----------------------------------------------------------------------------

class ConvBN(nn.Module):
    """Conv-BN-ReLU, pooled, and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.head(x.mean(dim=(2, 3)))


def bn_pinned(beta: float = -5.0, channels: tuple[int, ...] = (1, 4, 9, 12)) -> ConvBN:
    """BatchNorm whose shift is ``beta`` on ``channels`` (running stats as at init: identity)."""
    torch.manual_seed(0)
    model = ConvBN()
    with torch.no_grad():
        for c in channels:
            model.bn1.bias[c] = beta
    return model.eval()


def images(n: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, 8, 8, generator=g)


def relu_on_output(final_relu: bool = True) -> nn.Sequential:
    """An MLP ending in a ReLU (or not); output unit 0's bias makes it negative for every input."""
    model = mlp(depth=1)
    with torch.no_grad():
        model[2].bias[0] = -50.0
    return nn.Sequential(*model, nn.ReLU()).eval() if final_relu else model.eval()


def always_on(bias: float = 10.0, units: int = 8) -> nn.Sequential:
    """One hidden layer with ``bias`` added to its first ``units`` units."""
    model = mlp(depth=1)
    with torch.no_grad():
        model[0].bias[:units] += bias
    return model.eval()


def kill_units(linear: nn.Linear, count: int) -> None:
    """Make the first ``count`` units of ``linear`` negative for any non-negative input.

    Their weights keep a normal norm and their bias stays small, so nothing in the
    weights points to a specific cause (fed by a ReLU layer, their input is ≥ 0).
    """
    with torch.no_grad():
        linear.weight[:count] = -linear.weight[:count].abs()
        linear.bias[:count] = -linear.bias[:count].abs()


def planted_dead(counts: tuple[int, ...], width: int = 32, he: bool = False) -> nn.Sequential:
    """An MLP whose hidden layer k+1 has ``counts[k]`` units killed by :func:`kill_units`.

    The first hidden layer (fed by the signed input) keeps all its units. With ``he``,
    He init keeps the signal's scale, so no other units die with depth.
    """
    model = mlp(width=width, depth=len(counts) + 1)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    if he:
        for m in linears:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    for layer, count in zip(linears[1:], counts, strict=False):
        kill_units(layer, count)
    return model.eval()


def saturated_constant() -> nn.Sequential:
    """A sigmoid layer pushed to exactly 1.0 on every unit: the model's output is constant."""
    model = mlp(depth=1, act=nn.Sigmoid)
    with torch.no_grad():
        model[0].weight.mul_(0.01)
        model[0].bias.fill_(100.0)
    return model.eval()


def nan_weights() -> nn.Sequential:
    """A diverged checkpoint: NaN in some first-layer weights."""
    model = mlp(depth=2)
    with torch.no_grad():
        model[0].weight[:3, 0] = float("nan")
    return model.eval()
