"""On a GPU, recording must never wait for the device (skipped without CUDA).

The collector's per-batch work is tensor math on the model's device; any
``.item()``, ``bool(tensor)`` or host copy inside it would stall every batch.
``torch.cuda.set_sync_debug_mode("error")`` turns such a sync into an exception.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deadrelu.collector import Collector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 16)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        h = nn.functional.relu6(h) + torch.sigmoid(h)
        return nn.functional.gelu(self.fc(h.flatten(1)))


def test_recording_on_cuda_never_syncs_with_the_host():
    model = Net().cuda().eval()
    batches = [torch.randn(32, 3, 8, 8, device="cuda") for _ in range(4)]
    batches[2][0, 0, 0, 0] = float("nan")  # the non-finite path must stay sync-free too
    collector = Collector(model)
    with torch.no_grad(), collector:
        model(batches[0])  # the first forward traces sites (allocations, not syncs)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for x in batches[1:]:
                model(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = collector.snapshot()
    assert [s.info.kind for s in sites] == ["relu", "relu6", "sigmoid", "gelu"]
    assert all(s.stats.samples == 128 for s in sites)
