"""check_fit: clear mismatches between data and the first layer fail before any forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deadrelu.errors import DataError
from deadrelu.loading import check_fit, suggest_channels


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class HeadFirstCNN(nn.Module):
    """Registers its classifier before its convolution: registration != execution order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.conv = nn.Conv2d(3, 16, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def cnn(channels: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.LazyLinear(10)
    )


def fit_error(model: nn.Module, shape: tuple[int, ...]) -> str:
    with pytest.raises(DataError) as info:
        check_fit(model, shape)
    message = str(info.value)
    assert "\n" not in message and " — " in message
    return message


def test_linear_feature_mismatch():
    message = fit_error(MLP(), (64,))
    assert "(64,)" in message and "fc1 (Linear)" in message and "784 features" in message
    assert "--target COL" in message and "--image-size" not in message


def test_linear_one_feature_too_many_points_at_the_label_column():
    message = fit_error(MLP(), (785,))
    assert "one column too many" in message and "--target COL" in message


@pytest.mark.parametrize("shape", [(784,), (1, 28, 28), (28, 28), (7, 784)])
def test_linear_accepts_flattenable_samples(shape):
    check_fit(MLP(), shape)
    check_fit(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), shape)


def test_conv_channel_mismatch_suggests_channels():
    message = fit_error(cnn(3), (1, 28, 28))
    assert "(1, 28, 28)" in message and "0 (Conv2d)" in message
    assert "(3, H, W)" in message and "--channels 3" in message


@pytest.mark.parametrize("shape", [(784,), (3, 32), (2, 3, 4, 5)])
def test_conv_rank_mismatch(shape):
    fit_error(cnn(3), shape)


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 5, 5)])
def test_conv_matches(shape):
    check_fit(cnn(3), shape)


def test_conv1d_may_unsqueeze_or_transpose():
    audio = nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU())
    check_fit(audio, (16000,))  # forward may add the channel dimension
    series = nn.Sequential(nn.Conv1d(6, 4, 3), nn.ReLU())
    check_fit(series, (100, 6))  # forward may transpose (time, features)
    fit_error(series, (100, 5))


def test_conservative_when_unsure():
    check_fit(nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 2)), (12,))
    check_fit(nn.Sequential(nn.LazyLinear(8), nn.ReLU()), (5,))
    check_fit(nn.Sequential(nn.BatchNorm1d(5), nn.Linear(7, 2)), (5,))
    check_fit(nn.Sequential(nn.ReLU()), (5,))
    check_fit(HeadFirstCNN(), (3, 32, 32))


def test_scripted_models_are_checked():
    scripted = torch.jit.script(nn.Sequential(nn.Linear(10, 4), nn.ReLU()))
    check_fit(scripted, (10,))
    assert "expects 10 features" in fit_error(scripted, (3,))


def test_suggest_channels():
    assert suggest_channels(cnn(1)) == 1
    assert suggest_channels(cnn(3)) == 3
    assert suggest_channels(MLP()) is None
    assert suggest_channels(nn.Sequential(nn.Conv1d(2, 4, 3))) is None


class SmallCNN(nn.Module):
    """conv(1→4) on 8×8 images, then a Linear(64) head: flat (64,) data fits the head's size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.pool(self.conv(x))).flatten(1))


def test_a_later_layer_that_happens_to_fit_does_not_hide_the_mismatch():
    message = fit_error(SmallCNN(), (64,))  # 64 = the head's in_features, but conv runs first
    assert "(64,)" in message and "conv (Conv2d)" in message and "(1, H, W)" in message
    message = fit_error(SmallCNN(), (3, 8, 8))
    assert "--channels 1" in message
    check_fit(SmallCNN(), (1, 8, 8))


def test_exported_program_input_spec_is_checked():
    model = nn.Sequential(nn.Linear(64, 8), nn.ReLU())
    fixed = torch.export.export(model, (torch.randn(2, 64),)).module()
    check_fit(fixed, (64,), batch_size=2, num_samples=10)
    with pytest.raises(DataError, match="fixed batch size of 2 .* batches of 64"):
        check_fit(fixed, (64,), batch_size=64)
    with pytest.raises(DataError, match="--limit 8"):
        check_fit(fixed, (64,), batch_size=2, num_samples=9)
    dynamic = torch.export.export(model, (torch.randn(4, 64),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    check_fit(dynamic, (64,), batch_size=64)
    message = fit_error(dynamic, (32,))
    assert "(32,)" in message and "(*, 64)" in message
