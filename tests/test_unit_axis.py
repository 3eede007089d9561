"""The unit axis survives layout round trips: planted against the brute-force reference.

Each model records the activation's output as it runs; the collector's counters
must equal the brute-force counters over the dim that really holds the units,
on the fused and the eager statistics path, and planted dead channels must be
reported as exactly those channels.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import assert_matches, brute
from torch import nn

import deadrelu

pytestmark = pytest.mark.usefixtures("stats_path")

C = 6
DEAD = [0, 3]


def scan(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deadrelu.InsufficientDataWarning)
        return deadrelu.scan(model, data, **kw)


class Recorder(nn.Module):
    """Runs ``body`` and keeps what the activation ``act`` returned."""

    def __init__(self, body, act=torch.relu):
        super().__init__()
        self.body = body
        self.act = act
        self.outputs: list[torch.Tensor] = []

    def record(self, y):
        y = self.act(y)
        self.outputs.append(y.detach().clone())
        return y


def _check(model, data, site, unit_axis, dead=DEAD, source="known"):
    report = scan(model, data, batch_size=8)
    s = report.site(site)
    assert s.info.unit_axis == unit_axis and s.info.units == C
    assert s.info.unit_axis_source == source
    assert_matches(s.stats, brute(model.outputs, unit_axis))
    if dead is not None:
        assert report.units_in_state(site, "dead") == dead
    return report


def _plant(bias):
    with torch.no_grad():
        bias[DEAD] = -1e4


class Wav2Vec2Layer(Recorder):
    """wav2vec2/HuBERT "layer" feature extractor: conv → transpose → LayerNorm → back → GELU."""

    def __init__(self):
        super().__init__(None, act=F.gelu)
        self.conv = nn.Conv1d(3, C, 3)
        self.norm = nn.LayerNorm(C)
        with torch.no_grad():
            self.norm.weight[DEAD] = 0.0
        _plant(self.norm.bias)

    def forward(self, x):
        h = self.norm(self.conv(x).transpose(-2, -1)).transpose(-2, -1)
        return self.record(h)


def test_wav2vec2_layer_norm_feature_extractor():
    report = _check(Wav2Vec2Layer(), torch.randn(24, 3, 20), "<model>:gelu", 1)
    info = report.site("<model>:gelu").info  # a transpose back keeps the norm's own units
    assert (info.input_layer, info.input_direct) == ("norm", True)


class EncodecLSTM(Recorder):
    """EnCodec: conv → permute to (T, N, C) → LSTM + skip → permute back → ELU."""

    def __init__(self):
        super().__init__(None, act=nn.ELU())
        self.conv = nn.Conv1d(3, C, 3)
        self.lstm = nn.LSTM(C, C)
        _plant(self.conv.bias)
        with torch.no_grad():
            for p in self.lstm.parameters():
                p.zero_()

    def forward(self, x):
        h = self.conv(x).permute(2, 0, 1)
        h = self.lstm(h)[0] + h
        return self.record(h.permute(1, 2, 0))


def test_encodec_style_permute_lstm_permute_back():
    _check(EncodecLSTM(), torch.randn(24, 3, 11), "act", 1)


class ConvNeXt(Recorder):
    """Channels-last conv block: dwconv → permute → LayerNorm → Linear → GELU → permute back."""

    def __init__(self):
        super().__init__(None)
        self.dw = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.LayerNorm(3)
        self.pw = nn.Linear(3, C)
        self.gelu = nn.GELU()
        with torch.no_grad():
            self.pw.bias.fill_(1.0)
        _plant(self.pw.bias)

    def forward(self, x):
        h = self.norm(self.dw(x).permute(0, 2, 3, 1))
        h = self.gelu(self.pw(h)).permute(0, 3, 1, 2)
        return self.record(h)  # relu on the permuted-back tensor: channels in dim 1


def test_convnext_style_channels_last_block():
    model = ConvNeXt()
    report = _check(model, torch.randn(24, 3, 5, 5), "<model>:relu", 1)
    assert report.site("gelu").info.unit_axis == 3  # channels-last inside the block
    assert report.units_in_state("gelu", "dead") == DEAD


@pytest.mark.parametrize("trip", [
    lambda h: h.transpose(1, 2).transpose(1, 2),
    lambda h: h.transpose(1, 2).contiguous().transpose(1, 2).contiguous(),    # fused path
    lambda h: h.transpose(1, 2).mT.transpose(2, 1).mT,                        # double round trip
    lambda h: h.swapaxes(1, 2).swapdims(1, 2),
    lambda h: h.movedim(1, -1).movedim(-1, 1),
    lambda h: h.permute(2, 0, 1).permute(1, 2, 0),
    lambda h: h.unsqueeze(-1).view(h.shape[0], C, -1),
    lambda h: torch.cat([h, h], dim=2).chunk(2, dim=2)[1],
    lambda h: torch.stack([h, h], dim=-1).unbind(-1)[0],
    lambda h: h.split(4, dim=2)[0],
    lambda h: F.group_norm(h, 2),
    lambda h: F.rms_norm(h.transpose(1, 2), (C,)).transpose(1, 2),
    lambda h: nn.functional.layer_norm(h.mT, (C,)).mT * 2.0 + 1.0,
])
def test_conv_channels_survive_round_trips(trip):
    class Net(Recorder):
        def __init__(self):
            super().__init__(None)
            self.conv = nn.Conv1d(3, C, 3)
            _plant(self.conv.bias)

        def forward(self, x):
            return self.record(trip(self.conv(x)))

    _check(Net(), torch.randn(24, 3, 10), "<model>:relu", 1)


def test_channels_last_transposed_to_features_last_counts_features():
    class Net(Recorder):
        def __init__(self):
            super().__init__(None)
            self.conv = nn.Conv2d(3, C, 3, padding=1)
            _plant(self.conv.bias)

        def forward(self, x):  # (N, H, W, C): 4-d, yet the units are last
            return self.record(self.conv(x).permute(0, 2, 3, 1).contiguous())

    _check(Net(), torch.randn(24, 3, 4, 4), "<model>:relu", 3)


def test_a_raw_input_gets_the_default_rule_and_says_so():
    # relu on a raw (N, 5, C) model input: nothing says where the units are, so the
    # default rule takes the last dim for 3-d tensors, and the report says it guessed
    class Net(Recorder):
        def forward(self, x):
            return self.record(x)

    x = torch.randn(24, 5, C)
    x[:, :, DEAD] = -1.0
    report = _check(Net(None), x, "<model>:relu", 2, source="guessed")
    assert any("unit axis guessed for <model>:relu (dim 2)" in n for n in report.notes)
    assert report.layers.loc[0, "unit_axis_source"] == "guessed"
    x4 = torch.randn(24, C, 2, 3)
    x4[:, DEAD] = -1.0
    _check(Net(None), x4, "<model>:relu", 1, source="guessed")


def test_a_lost_layout_falls_back_to_the_default_rule():
    class Net(Recorder):
        def __init__(self):
            super().__init__(None)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):  # 4 channels of 6x6 regrouped into 6 rows of 24: units lost
            return self.record(self.conv(x).reshape(x.shape[0], C, -1))

    report = scan(Net(), torch.randn(16, 3, 6, 6))
    info = report.site("<model>:relu").info
    assert (info.unit_axis, info.units, info.unit_axis_source) == (2, 24, "guessed")


def test_config_unit_axis_is_marked_as_such():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    report = scan(model, torch.randn(8, 3, 4), unit_axis={"1": 1})
    assert report.site("1").info.unit_axis_source == "config"
    assert not report.notes
