"""The fused CPU kernel against the eager statistics and the brute-force reference.

The kernel is a speed-up only: every counter must equal the eager path's (sums up
to float rounding) on every layout, kind and NaN/Inf pattern, and where it cannot
be built deadrelu must fall back to the eager path with a reason it can show.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from deadrelu import native
from deadrelu.stats import UnitStats, scratch_size
from tests.reference import assert_matches, brute

KINDS = {  # level, sat_low, sat_high, nonneg, transform
    "relu": (0.0, None, None, True, torch.relu),
    "tanh": (0.0, -0.9, 0.9, False, torch.tanh),
    "sigmoid": (0.5, 0.05, 0.95, True, torch.sigmoid),
    "gelu": (0.0, None, None, False, torch.nn.functional.gelu),
}

LAYOUTS = [  # (shape, reduce_dim): conv rows, short rows, unit-group tails, sequences, flat
    ((7, 5, 33), 2),
    ((9, 64, 1024), 2),
    ((3, 9, 16), 2),
    ((5, 130, 1), 2),
    ((6, 1, 70), 1),
    ((4, 13, 200), 1),
    ((300, 1, 7), 1),
    ((2, 3, 1), 1),
]


def _needs_kernel() -> None:
    if not native.available():
        pytest.skip(f"fused kernel not available here: {native.reason()}")


def _update(y: torch.Tensor, rd: int, kind: str, eager: bool) -> UnitStats:
    level, low, high, nonneg, _ = KINDS[kind]
    stats = UnitStats.zeros(y.shape[3 - rd])
    scratch = torch.empty(scratch_size(y))
    if eager:
        with native.disabled():
            stats.update(y, rd, level, low, high, nonneg, scratch)
    else:
        stats.update(y, rd, level, low, high, nonneg, scratch)
    return stats


def _poison(y: torch.Tensor) -> torch.Tensor:
    flat = y.view(-1)
    flat[torch.randint(0, y.numel(), (max(1, y.numel() // 50),))] = float("nan")
    flat[torch.randint(0, y.numel(), (3,))] = float("inf")
    flat[torch.randint(0, y.numel(), (2,))] = float("-inf")
    return y


@pytest.mark.parametrize("shape,rd", LAYOUTS)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("poison", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_kernel_equals_the_eager_path(shape, rd, kind, poison, strided):
    _needs_kernel()
    y = KINDS[kind][4](torch.randn(shape) * 2)
    if poison:
        y = _poison(y)
    if strided:  # samples not outermost in memory: non-contiguous, innermost dim still dense
        y = y.transpose(0, 1).contiguous().transpose(0, 1)
    fused, eager = _update(y, rd, kind, eager=False), _update(y, rd, kind, eager=True)
    for name, value in fused.tensors.items():
        expected = eager.tensors[name]
        if name in ("sum", "abs_sum"):
            assert torch.allclose(value, expected, rtol=1e-5, atol=1e-3, equal_nan=True), name
        else:
            assert torch.equal(value, expected), name
    assert (fused.samples, fused.positions) == (eager.samples, eager.positions)


def test_kernel_matches_the_brute_force_reference_on_planted_units():
    _needs_kernel()
    y = torch.randn(40, 6, 25)
    y[:, 0] = -1.0  # dead
    y[:, 1] = 2.0  # always on and saturated above
    y[5, 2, 3] = float("nan")
    stats = UnitStats.zeros(6)
    stats.update(y, 2, 0.0, -0.5, 1.5, False, torch.empty(scratch_size(y)))
    assert_matches(stats, brute(y, 1, 0.0, 0, -0.5, 1.5))


def test_kernel_results_are_identical_run_to_run():
    _needs_kernel()
    y = torch.randn(64, 37, 50)
    first, second = _update(y, 2, "gelu", False), _update(y, 2, "gelu", False)
    assert all(torch.equal(first.tensors[k], second.tensors[k]) for k in first.tensors)


def test_inputs_the_kernel_does_not_take_go_to_the_eager_path():
    _needs_kernel()
    acc = UnitStats.zeros(4).tensors
    assert not native.update(acc, torch.randn(3, 4, 5, dtype=torch.float64), 2, 0.0, None, None, False)
    assert not native.update(acc, torch.randn(3, 5, 4).transpose(1, 2), 2, 0.0, None, None, False)
    assert all(float(v.abs().sum()) == 0 for k, v in acc.items() if k != "max")


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """The loader as in a new process, with its cache in ``tmp_path``."""
    monkeypatch.setenv("DEADRELU_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_ops", None)
    monkeypatch.setattr(native, "_reason", None)
    return tmp_path


def test_without_a_compiler_the_eager_path_runs_and_the_reason_is_kept(fresh_native, monkeypatch):
    monkeypatch.setenv("CXX", str(fresh_native / "no-such-compiler"))
    y = torch.randn(8, 3, 10)
    stats = UnitStats.zeros(3)
    stats.update(y, 2, 0.0, None, None, False, torch.empty(scratch_size(y)))
    assert_matches(stats, brute(y, 1))  # eager results all the same
    assert "fused kernel unavailable" in (native.reason() or "")
    assert "no-such-compiler" in native.reason()
    markers = list(fresh_native.glob("*.failed"))
    assert len(markers) == 1  # later processes read the note instead of retrying
    monkeypatch.setattr(native, "_reason", None)
    assert not native.needs_build() and not native.ensure()


def test_environment_switch_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv("DEADRELU_NATIVE", "0")
    assert not native.ensure()
    assert native.reason() == "turned off by DEADRELU_NATIVE"


def test_status_command_says_whether_the_kernel_is_in_use(monkeypatch):
    monkeypatch.setenv("DEADRELU_NATIVE", "off")
    done = subprocess.run([sys.executable, "-m", "deadrelu.native"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert done.stdout.strip() == "turned off by DEADRELU_NATIVE"
