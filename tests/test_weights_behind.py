"""The weights read on a background thread during a scan's forwards
(identity.start_reading): always the result of ``read_weights`` on the weights after
the scan, joined on every exit path, and only where it is safe and useful."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import fix_models as fm
import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu import assemble, identity, scanning
from deadrelu.errors import ModelError
from deadrelu.identity import PendingWeights, read_weights, start_reading, weights_fingerprint

SM = Path(__file__).resolve().parents[1] / "sample_models"


@pytest.fixture
def behind(monkeypatch: pytest.MonkeyPatch) -> list[PendingWeights]:
    """Background reads allowed for any model (a core to spare, no minimum size); the
    reads that scans start are collected."""
    monkeypatch.setattr(identity, "usable_cpus", lambda: torch.get_num_threads() + 1)
    monkeypatch.setattr(identity, "_load", lambda: 0.0)
    monkeypatch.setattr(identity, "BACKGROUND_MIN_BYTES", 0)
    started: list[PendingWeights] = []

    def spy(model: nn.Module) -> PendingWeights:
        started.append(start_reading(model))
        return started[-1]

    monkeypatch.setattr(scanning, "start_reading", spy)
    return started


def _conv_bn() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
                          nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(2, 3, 10, 10))  # materializes the lazy layer; running stats move
    return model


def _with_nan() -> nn.Module:
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].weight[3, 1] = float("nan")
        model[2].bias[0] = float("-inf")
    return model


MODELS = {
    "mlp": lambda: nn.Sequential(nn.Linear(7, 32), nn.ReLU(), nn.Linear(32, 32), nn.GELU(),
                                 nn.Linear(32, 2)),
    "conv-bn": _conv_bn,
    "tied": fm.TiedEmbedding,
    "nan": _with_nan,
}


@pytest.mark.parametrize("name", MODELS)
def test_the_background_read_equals_the_synchronous_read(name: str, behind: list[PendingWeights]):
    torch.manual_seed(0)
    model = MODELS[name]()
    pending = start_reading(model)
    assert pending.background
    weights = pending.result()
    assert weights == read_weights(model)
    assert pending.seconds > 0
    assert pending.result() == weights  # asked again: read anew, the same
    if name == "nan":
        assert weights.nonfinite == {"0.weight": 1, "2.bias": 1}


class _Counting(nn.Module):
    """Counts its calls in a buffer, in place."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(self.fc(x))


class _Reassigning(nn.Module):
    """Replaces a buffer with a new tensor on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.register_buffer("offset", torch.zeros(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.offset = self.offset + 1
        return torch.relu(self.fc(x) + self.offset)


class _TrainingNorm(nn.Module):
    """Forces its BatchNorm into train mode: running statistics updated in place."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.norm.train()
        return torch.relu(self.norm(self.fc(x)))


class _DataSwapping(nn.Module):
    """Swaps a parameter's storage through ``.data =``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc.weight.data = self.fc.weight.data * 0.5
        return torch.relu(self.fc(x))


CHANGING = [_Counting, _Reassigning, _TrainingNorm, _DataSwapping]


@pytest.mark.parametrize("make", CHANGING, ids=lambda m: m.__name__)
def test_a_forward_that_changes_the_weights_after_the_hash_gets_a_new_read(
        make: type[nn.Module], behind: list[PendingWeights]):
    torch.manual_seed(0)
    model = make()
    before = weights_fingerprint(model)
    pending = start_reading(model)
    assert pending.background
    assert pending._thread is not None
    pending._thread.join()  # the hash of the weights before the forward is done
    with torch.no_grad():
        model(torch.randn(16, 4))
    after = read_weights(model)
    assert after.fingerprint != before
    assert pending.result() == after


@pytest.mark.parametrize("make", CHANGING, ids=lambda m: m.__name__)
def test_a_scan_reports_the_weights_as_they_are_after_it(make: type[nn.Module],
                                                         behind: list[PendingWeights]):
    torch.manual_seed(0)
    model = make()
    before = weights_fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, torch.randn(64, 4), batch_size=16)
    assert [p.background for p in behind] == [True]
    assert report.meta["weights_fingerprint"] == weights_fingerprint(model) != before


def test_weights_left_alone_keep_the_background_hash(behind: list[PendingWeights],
                                                     monkeypatch: pytest.MonkeyPatch):
    torch.manual_seed(0)
    model = MODELS["conv-bn"]()
    reads: list[nn.Module] = []
    counted = lambda m: reads.append(m) or read_weights(m)  # noqa: E731
    monkeypatch.setattr(identity, "read_weights", counted)
    monkeypatch.setattr(assemble, "read_weights", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, torch.randn(40, 3, 10, 10), batch_size=8)
    assert reads == []  # neither read again at the end nor in the report's assembly
    assert report.meta["weights_fingerprint"] == weights_fingerprint(model)


def test_a_failing_hash_falls_back_to_the_synchronous_read(behind: list[PendingWeights],
                                                           monkeypatch: pytest.MonkeyPatch):
    model = MODELS["mlp"]()
    hash_ = identity._hash
    calls: list[int] = []

    def once_broken(pieces):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("no memory on the thread")
        return hash_(pieces)

    monkeypatch.setattr(identity, "_hash", once_broken)
    assert start_reading(model).result() == read_weights(model)
    monkeypatch.setattr(identity, "_hash", lambda pieces: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ValueError, match="bad"):  # what the synchronous read raises
        start_reading(model).result()


class _Failing(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.relu(self.fc(x))
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("broken"), KeyboardInterrupt()],
                         ids=["raises", "interrupted"])
def test_the_thread_is_joined_when_the_scan_fails(error: BaseException,
                                                  behind: list[PendingWeights]):
    with pytest.raises((ModelError, KeyboardInterrupt)):
        deadrelu.scan(_Failing(error), torch.randn(32, 4))
    assert len(behind) == 1 and behind[0].background
    assert behind[0]._thread is not None and not behind[0]._thread.is_alive()
    assert behind[0]._state is None  # the hashed tensors are let go


def test_a_partial_scan_on_interrupt_reports_the_weights(behind: list[PendingWeights]):
    model = _Failing(KeyboardInterrupt())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, torch.randn(32, 4), partial_on_interrupt=True)
    assert report.meta["partial"]
    assert behind[0]._thread is not None and not behind[0]._thread.is_alive()
    assert report.meta["weights_fingerprint"] == weights_fingerprint(model)


def test_cancel_stops_the_hash_and_result_reads_again(behind: list[PendingWeights]):
    model = MODELS["conv-bn"]()
    pending = start_reading(model)
    pending.cancel()
    assert pending._thread is not None and not pending._thread.is_alive()
    assert pending.result() == read_weights(model)


def test_no_background_read_without_a_spare_core(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(identity, "BACKGROUND_MIN_BYTES", 0)
    monkeypatch.setattr(identity, "_load", lambda: 0.0)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    model = MODELS["mlp"]()
    for cpus in (1, torch.get_num_threads()):  # one core; every core in torch's team
        monkeypatch.setattr(identity, "usable_cpus", lambda cpus=cpus: cpus)
        pending = start_reading(model)
        assert not pending.background
        assert pending.result() == read_weights(model)
    monkeypatch.setattr(identity, "usable_cpus", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert start_reading(model).background
    monkeypatch.setattr(identity, "_load", lambda: 7.6)  # the machine busy with other work
    assert not start_reading(model).background
    monkeypatch.setattr(identity, "_load", lambda: 7.4)
    assert start_reading(model).background


def test_usable_cpus_are_capped_by_a_cgroup_quota(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert identity.cgroup_cpu_quota(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert identity.cgroup_cpu_quota(v2) == 1.5
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert identity.cgroup_cpu_quota(v1.parent) is None
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    assert identity.cgroup_cpu_quota(v1.parent) == 2.0
    assert identity.cgroup_cpu_quota(tmp_path / "none") is None
    monkeypatch.setattr(identity, "cgroup_cpu_quota", lambda: 1.5)
    assert identity.usable_cpus() == 1  # one and a half CPUs leave no core to spare


def test_no_background_read_for_small_models_or_weights_it_cannot_view(
        behind: list[PendingWeights], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(identity, "BACKGROUND_MIN_BYTES", 4 << 20)
    small = nn.Sequential(nn.Linear(100, 100), nn.ReLU())  # 40 kB
    large = nn.Sequential(nn.Linear(1100, 1000), nn.ReLU())  # 4.4 MB
    assert not start_reading(small).background and start_reading(large).background
    monkeypatch.setattr(identity, "BACKGROUND_MIN_BYTES", 0)
    meta = nn.Sequential(nn.Linear(4, 4, device="meta"), nn.ReLU())  # not on the CPU
    transposed = nn.Linear(4, 6)
    transposed.weight = nn.Parameter(torch.randn(4, 6).t())  # a copy would be torch work
    with torch.inference_mode():
        inference = nn.Linear(4, 4)  # no version counter to check
    for model in (meta, transposed, inference):
        pending = start_reading(model)
        assert not pending.background
        assert pending.result() == read_weights(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_weights_are_read_at_the_end(behind: list[PendingWeights]):
    model = MODELS["mlp"]().cuda()
    pending = start_reading(model)
    assert not pending.background  # device-to-host copies would sync the forwards' stream
    assert pending.result() == read_weights(model)


def _sample_models():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_behind_sample_models", SM / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (SM / "cnn.pt").exists(), reason="sample models not built")
@pytest.mark.parametrize(("cls", "weights", "data"), [
    ("DigitsMLP", "mlp_high_lr.pt", "digits_test.npy"),
    ("DigitsCNN", "cnn.pt", "digits_test_img.npy"),
])
def test_sample_model_reports_are_unchanged(cls: str, weights: str, data: str,
                                            monkeypatch: pytest.MonkeyPatch):
    model = getattr(_sample_models(), cls)()
    model.load_state_dict(torch.load(SM / weights, map_location="cpu"))
    x = torch.from_numpy(np.load(SM / "data" / data))
    synchronous = deadrelu.scan(model, x)
    monkeypatch.setattr(identity, "usable_cpus", lambda: torch.get_num_threads() + 1)
    monkeypatch.setattr(identity, "_load", lambda: 0.0)
    monkeypatch.setattr(identity, "BACKGROUND_MIN_BYTES", 0)
    assert start_reading(model).background
    behind = deadrelu.scan(model, x)
    assert behind.meta["weights_fingerprint"] == synchronous.meta["weights_fingerprint"] \
        == weights_fingerprint(model)
    drop = ("seconds",)
    assert {k: v for k, v in behind.to_dict()["meta"].items() if k not in drop} \
        == {k: v for k, v in synchronous.to_dict()["meta"].items() if k not in drop}
    assert behind.evidence == synchronous.evidence and behind.findings == synchronous.findings
