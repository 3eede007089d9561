"""Models spread over several devices are scanned where they are: no move, no second copy of
the weights, each site's counters on the device its activation ran on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference import assert_matches, brute
from torch import nn

import deadrelu

pytestmark = pytest.mark.filterwarnings("ignore::deadrelu.scanning.InsufficientDataWarning")


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def test_offloaded_layers_are_scanned_in_place(tmp_path: Path) -> None:
    """accelerate keeps an offloaded layer's weights on ``meta`` (loaded only while it runs)."""
    accelerate = pytest.importorskip("accelerate")
    x = torch.randn(300, 8)
    reference = deadrelu.scan(_mlp(), x)
    model = accelerate.dispatch_model(
        _mlp(), device_map={"0": "cpu", "1": "cpu", "2": "disk", "3": "cpu", "4": "cpu"},
        main_device="cpu", offload_dir=str(tmp_path))
    assert model[2].weight.is_meta
    report = deadrelu.scan(model, x, device="auto")
    assert model[2].weight.is_meta  # not moved, not materialised a second time
    for got, expected in zip(report.sites, reference.sites, strict=True):
        assert got.stats.to_dict() == expected.stats.to_dict()
    # the offloaded layer's weights cannot be read: no weight evidence for the site it feeds
    assert report.evidence["sites"]["3"]["layer"] is None
    assert report.evidence["sites"]["1"]["layer"] == "0"


class _Split(nn.Module):
    """Layers placed by hand on two devices, as a pipeline would place them."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__()
        self.a = nn.Linear(8, 16).to(first)
        self.b = nn.Linear(16, 4).to(second)
        self.second = second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return torch.relu(self.b(h.to(self.second)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counters_live_on_each_sites_device() -> None:
    model = _Split("cuda", "cpu")
    x = torch.randn(64, 8)
    report = deadrelu.scan(model, x, device="auto")
    assert model.a.weight.device.type == "cuda" and model.b.weight.device.type == "cpu"
    with torch.no_grad():
        h = torch.relu(model.a(x.cuda()))
        y = torch.relu(model.b(h.cpu()))
    assert_matches(report.sites[0].stats, brute(h.cpu(), unit_axis=1))
    assert_matches(report.sites[1].stats, brute(y, unit_axis=1))
    from deadrelu.collector import Collector

    collector = Collector(model)
    with collector, torch.no_grad():
        model(x.cuda())
    devices = [site.stats.device.type for site in collector.sites.values()]
    assert devices == ["cuda", "cpu"]
