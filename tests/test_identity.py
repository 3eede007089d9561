"""Model identity: unwrap, signature, and the one pass over the weights (fingerprint + NaN/Inf)."""

from __future__ import annotations

import hashlib

import fix_models as fm
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu import identity
from deadrelu.identity import read_weights, weights_fingerprint


def _reference_fingerprint(model: nn.Module) -> str:
    """sha256 of each state_dict entry's name, dtype, shape and row-major bytes (numpy's)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _reference_nonfinite(model: nn.Module) -> dict[str, int]:
    out = {}
    for name, p in model.named_parameters():
        bad = int((~torch.isfinite(p.detach())).sum()) if p.is_floating_point() else 0
        if bad:
            out[name] = bad
    return out


def test_one_pass_gives_the_reference_fingerprint_and_exact_nonfinite_counts():
    torch.manual_seed(0)
    model = fm.TiedEmbedding()
    with torch.no_grad():
        model.embed.weight[2, 3] = float("nan")
        model.embed.weight[4, 0] = float("-inf")
        model.norm.bias[1] = float("inf")
        model.norm.running_mean[0] = float("nan")  # a buffer: fingerprinted, not a parameter
    weights = read_weights(model)
    assert weights.fingerprint == _reference_fingerprint(model) == weights_fingerprint(model)
    assert weights.nonfinite == _reference_nonfinite(model) == {"embed.weight": 2, "norm.bias": 1}
    assert list(weights.nonfinite) == ["embed.weight", "norm.bias"]  # named_parameters order


def test_finite_weights_report_nothing_and_change_the_fingerprint_when_nudged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    before = read_weights(model)
    assert before.nonfinite == {}
    with torch.no_grad():
        model[2].bias[0] += 1e-6
    assert read_weights(model).fingerprint != before.fingerprint


def test_a_scan_reads_each_weight_tensor_once(monkeypatch: pytest.MonkeyPatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    reads: list[int] = []
    raw_bytes = identity._raw_bytes
    monkeypatch.setattr(identity, "_raw_bytes", lambda t: reads.append(1) or raw_bytes(t))
    report = deadrelu.scan(model, torch.randn(200, 5))
    assert len(reads) == len(model.state_dict())  # every tensor hashed once, nothing twice
    assert report.meta["weights_fingerprint"] == weights_fingerprint(model)
    assert report.evidence["nonfinite_params"] == {"3.weight": 1}


def test_unwrap_strips_data_parallel_and_refuses_torchscript():
    inner = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    module, notes = identity.unwrap(nn.DataParallel(inner))
    assert module is inner and notes == ["DataParallel wrapper: scanned its .module"]
    with pytest.raises(deadrelu.DeadReluError, match="TorchScript"):
        identity.unwrap(torch.jit.script(inner))
