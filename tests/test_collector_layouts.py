"""Which dimension holds samples and which holds units, in the less common layouts.

Planted against the brute-force reference: sequence tensors whose time length
equals a batch size, conv outputs that pass through dropout, padding, upsampling,
``torch.cat``, functional convs or a transpose before the activation, dict batches
with a tensor that is not batched, and sites with no batch dimension at all.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu
from deadrelu.errors import ConfigError

pytestmark = pytest.mark.usefixtures("stats_path")


def scan(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kw)


class TimeMajor(nn.Module):
    """Runs on (T, N, C) inside, as PyTorch's sequence modules do; T = 8."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.outputs: list[torch.Tensor] = []

    def forward(self, x):  # x: (N, 8, 4)
        y = F.relu(self.fc(x.transpose(0, 1)))
        self.outputs.append(y.transpose(0, 1).detach().clone())
        return y


@pytest.mark.parametrize("sizes", [[16, 16, 8], [16, 8, 16], [16, 5]])
def test_time_major_tensor_keeps_its_sample_axis_when_a_batch_matches_t(sizes):
    # (a *first* batch of size T is ambiguous: both dims hold 8; docs/architecture.md)
    torch.manual_seed(0)
    model = TimeMajor()
    data = [torch.randn(n, 8, 4) for n in sizes]
    report = scan(model, data)
    site = report.site("<model>:relu")
    assert site.stats.samples == sum(sizes)
    assert_matches(site.stats, brute(model.outputs, 2))


class Conv1dThen(nn.Module):
    def __init__(self, middle):
        super().__init__()
        self.a = nn.Conv1d(3, 5, 3, padding=1)
        self.b = nn.Conv1d(3, 4, 3, padding=1)
        self.middle = middle

    def forward(self, x):  # x: (N, 3, 10)
        return torch.relu(self.middle(self, x))


@pytest.mark.parametrize("middle, units", [
    (lambda m, x: nn.functional.dropout(m.a(x), 0.5, training=False), 5),
    (lambda m, x: nn.ConstantPad1d(1, 0.0)(m.a(x)), 5),
    (lambda m, x: nn.Upsample(scale_factor=2)(m.a(x)), 5),
    (lambda m, x: torch.cat([m.a(x), m.b(x)], dim=1), 9),
    (lambda m, x: F.conv1d(x, m.a.weight), 5),
    (lambda m, x: m.a(x.transpose(1, 2).transpose(1, 2)).transpose(1, 2), 5),
])
def test_conv_outputs_keep_channels_as_units_through_shape_keeping_ops(middle, units):
    torch.manual_seed(0)
    report = scan(Conv1dThen(middle), torch.randn(12, 3, 10))
    assert report.site("<model>:relu").info.units == units


def test_dict_batches_with_an_unbatched_tensor_are_limited_by_the_batch():
    class Biased(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)

        def forward(self, bias, x):
            return torch.relu(self.fc(x) + bias)

    data = [{"bias": torch.zeros(8), "x": torch.randn(16, 4)} for _ in range(2)]
    report = scan(Biased(), data, limit=20)
    assert report.samples == 20 and report.site("<model>:relu").stats.samples == 20


def test_a_site_without_a_batch_dimension_does_not_inflate_the_sample_count():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Parameter(torch.randn(500, 4))
            self.fc = nn.Linear(4, 8)

        def forward(self, x):
            return torch.relu(self.fc(x)) * torch.sigmoid(self.gate).mean()

    report = scan(Gate(), torch.randn(64, 4), batch_size=32)
    assert report.samples == 64 and report.summary()["samples"] == 64


def test_unit_axis_on_the_sample_dimension_is_a_config_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ConfigError, match="is its sample dimension"):
        scan(model, torch.randn(8, 3, 6, 6), unit_axis={"1": 0})


def test_time_major_data_with_batch_dim_1_equals_the_batch_first_scan():
    torch.manual_seed(0)
    time_major = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0)
    batch_first = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0,
                                             batch_first=True)
    batch_first.load_state_dict(time_major.state_dict())
    x = torch.randn(22, 5, 16)  # 22 sequences of 5 tokens
    a = scan(batch_first, x, batch_size=6)
    b = scan(time_major, x.transpose(0, 1).contiguous(), batch_size=6, batch_dim=1)
    assert a.samples == b.samples == 22
    sa, sb = a.site("<model>:relu").stats, b.site("<model>:relu").stats
    assert sa.samples == sb.samples == 22
    for name in ("active", "sample_active"):
        assert torch.equal(sa.tensors[name], sb.tensors[name]), name


@pytest.mark.parametrize("regroup, units", [
    (lambda y: y.view(y.shape[0], y.shape[1], -1), 4),        # (N, C, H*W): still channels
    (lambda y: y.flatten(2), 4),
    (lambda y: y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, 4), 4),  # (N, HW, C): features last
    (lambda y: y.reshape(y.shape[0], 6, -1), 24),             # dims reinterpreted: default rule
])
def test_regrouped_conv_outputs(regroup, units):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(regroup(self.conv(x)))

    report = scan(Net(), torch.randn(10, 3, 6, 6))
    assert report.site("<model>:relu").info.units == units


def test_an_elementwise_op_takes_the_layout_of_any_operand():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(8, 8, 3, padding=1)
            self.bn = nn.BatchNorm1d(8)
            self.gain = nn.Parameter(torch.ones(8, 1))

        def forward(self, x):  # the raw input, then a parameter, come first
            y = torch.relu(x + self.bn(self.conv(x)))
            return torch.relu(self.gain * self.conv(y))

    report = scan(Block(), torch.randn(12, 8, 40))
    for name in ("<model>:relu", "<model>:relu#1"):
        assert report.site(name).info.unit_axis == 1 and report.site(name).info.units == 8
    assert report.site("<model>:relu").info.input_layer == "bn"
