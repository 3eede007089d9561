"""Firing is the pre-activation's sign, for every activation.

Where the output does not tell (PReLU and RReLU with any slope, leaky ReLU / ELU /
CELU with a negative slope, ``F.threshold`` with a replacement above its
threshold, softplus), the counters must equal the brute-force reference computed
from the *input*, on the fused and the eager statistics path, in place or not.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu
from deadrelu.collector import Collector

pytestmark = pytest.mark.usefixtures("stats_path")


def scan(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kw)


class Act(nn.Module):
    """Linear, then ``act``; keeps each call's input (before the call) and output."""

    def __init__(self, act, width=6):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.act = act
        self.xs: list[torch.Tensor] = []
        self.ys: list[torch.Tensor] = []

    def forward(self, x):
        h = self.fc(x)
        self.xs.append(h.detach().clone())
        y = self.act(h)
        self.ys.append(y.detach().clone())
        return y


def _record(model, batches, train=False):
    model.train(train)
    with Collector(model) as c:
        for b in batches:
            model(b)
    (site,) = c.snapshot()
    return site


CASES = [
    ("prelu", lambda: nn.PReLU(6, init=-0.5), 0.0),
    ("F.prelu", lambda: (lambda h: F.prelu(h, torch.tensor([-1.0, 0.5, 0.0, 2.0, -0.1, 0.25]))), 0.0),
    ("rrelu", lambda: nn.RReLU(-0.5, 0.3), 0.0),
    ("rrelu_", lambda: (lambda h: F.rrelu(h, -0.5, 0.3, training=True, inplace=True)), 0.0),
    ("leaky_neg", lambda: nn.LeakyReLU(-0.2), 0.0),
    ("leaky_neg_", lambda: (lambda h: F.leaky_relu_(h, -0.2)), 0.0),
    ("elu_neg_", lambda: (lambda h: F.elu(h, alpha=-0.5, inplace=True)), 0.0),
    ("celu_neg", lambda: nn.CELU(alpha=-1.0), 0.0),
    ("threshold_up", lambda: nn.Threshold(0.1, 5.0), 0.1),
    ("threshold_up_", lambda: (lambda h: F.threshold_(h, -0.2, 3.0)), -0.2),
    ("softplus_small", lambda: nn.Softplus(beta=1.0, threshold=0.05), 0.0),
    ("softplus", lambda: nn.Softplus(beta=2.0), 0.0),
]


@pytest.mark.parametrize("name, make, input_level", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_firing_is_read_from_the_input(name, make, input_level, train):
    torch.manual_seed(0)
    model = Act(make())
    batches = [torch.randn(16, 4) * 2 for _ in range(3)]
    batches[1][:4] = 0.0  # inputs exactly at the bias: a value at the kink in many units
    with torch.no_grad():
        model.fc.bias[2] = 0.0  # ... and unit 2 exactly at 0 there
    site = _record(model, batches, train)
    assert site.info.input_level == input_level
    assert_matches(site.stats, brute(model.ys, 1, xs=model.xs, input_level=input_level))


class NegPReLU(nn.Module):
    """A conv channel whose pre-activation is never positive, with a negative PReLU slope."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.PReLU(4, init=-0.7)
        with torch.no_grad():
            self.conv.bias[1] = -1e3   # never crosses 0: output is +700 everywhere
            self.conv.bias[2] = 1e3    # always positive: acts linearly with slope 1

    def forward(self, x):
        return self.act(self.conv(x))


def test_a_negative_slope_channel_that_never_crosses_zero_is_dead_not_always_on():
    report = scan(NegPReLU(), torch.randn(40, 3, 5, 5))
    assert report.units_in_state("act", "dead") == [1]
    assert report.units_in_state("act", "always_on") == [2]
    (dead,) = [f for f in report.findings if f.layer == "act" and f.code.startswith("DR00")]
    assert "never crossed zero" in dead.message


def test_threshold_with_a_replacement_above_it_fires_above_the_threshold():
    model = nn.Sequential(nn.Linear(4, 6), nn.Threshold(0.0, 5.0))
    report = scan(model, torch.randn(200, 4))
    info = report.site("1").info
    assert (info.level, info.input_level) == (5.0, 0.0)
    # outputs are 5.0 below the threshold; nothing there may read as firing
    assert report.verdicts["1"].fire_rate.max() < 1.0


def test_softplus_exactly_at_zero_does_not_fire():
    # float32 softplus(0) rounds above log(2): read off the output it would fire
    model = Act(nn.Softplus())
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    site = _record(model, [torch.randn(8, 4)])
    assert site.stats.active.sum() == 0


def test_plain_relu_keeps_reading_the_output():
    model = Act(nn.ReLU())
    site = _record(model, [torch.randn(8, 4), torch.randn(8, 4)])
    assert site.info.input_level is None
    assert_matches(site.stats, brute(model.ys, 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_scans_agree_with_float32(dtype):
    """Per-unit fire and saturation rates of a half/bfloat16 scan are within 2 points
    (absolute) of the float32 scan of the same weights and data (docs/architecture.md),
    and the counting itself is exact on the low-precision tensors."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.PReLU(16, -0.3),
                        nn.Linear(16, 8), nn.Sigmoid())
    with torch.no_grad():
        net[2].bias[:3] = -50.0  # planted dead units
    x = torch.randn(512, 8)
    ref = scan(net, x, batch_size=64)
    low = scan(net.to(dtype), x.to(dtype), batch_size=64)
    for site in ("1", "3", "5"):
        a, b = ref.verdicts[site], low.verdicts[site]
        assert abs(a.fire_rate - b.fire_rate).max() <= 0.02, site
        assert abs(a.saturated_rate - b.saturated_rate).max() <= 0.02, site
        assert list(ref.units_in_state(site, "dead")) == list(low.units_in_state(site, "dead"))
    assert low.units_in_state("3", "dead") == [0, 1, 2]
