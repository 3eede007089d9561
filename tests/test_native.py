"""The fused CPU kernel against the eager statistics and the brute-force reference.

The kernel is a speed-up only: every counter must equal the eager path's (sums up
to float rounding) on every layout, kind and NaN/Inf pattern, and where it cannot
be built deadrelu must fall back to the eager path with a reason it can show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

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


#: Positions per slice around the packed kernel's range (R < 32, rows end to end):
#: a 1x1 map, a 1x2 row, 2x2, 3x3, 5x5, the last packed length, and the first two that
#: take the row-by-row kernel.
SHORT_ROWS = [1, 2, 4, 9, 25, 31, 32, 33]


def _planted(R: int, kind: str) -> torch.Tensor:
    """70 samples (two full folds of 32 and a partial one) of 300 units (several blocks
    of units and a tail shorter than one vector) with planted units: dead, firing once,
    NaN and Inf slices, and values big enough that the fast path must hand the unit to
    the slice-by-slice rule (their slices' sums still fit a float32)."""
    f = KINDS[kind][4]
    x = torch.randn(70, 300, R) * 2
    x[:, 0] = -30.0  # dead
    x[:, 1] = -30.0
    x[41, 1, R - 1] = 3.0  # fires at one position of one sample, in the second fold
    if R > 1:  # (R == 1 is a Linear-like output, whose NaN rule is per batch: test_stats)
        x[5, 2, 0] = float("nan")
        x[66, 3, R // 2] = float("inf")
        x[12, 299, 0] = float("-inf")  # in the last block's tail
    y = f(x)
    y[::7, 4, 0] = 2e37  # fold totals above the fast path's bound
    return y


@pytest.mark.parametrize("R", SHORT_ROWS)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("spaced", [False, True])
def test_short_rows_match_the_brute_force_reference(R, kind, spaced):
    _needs_kernel()
    level, low, high, nonneg, _ = KINDS[kind]
    y = _planted(R, kind)
    if spaced:  # samples further apart than one sample's rows: a batch sliced [::2]
        y = torch.stack([y, torch.zeros_like(y)], 1).flatten(0, 1)[::2]
    stats = UnitStats.zeros(300)
    stats.update(y, 2, level, low, high, nonneg, torch.empty(scratch_size(y)))
    assert_matches(stats, brute(y, 1, level, 0, low, high))
    assert int(stats.active[0]) == 0 and int(stats.sample_active[1]) == 1
    assert int(stats.nonfinite[2]) == (R > 1)  # NaN stays NaN through every kind


@pytest.mark.parametrize("R", SHORT_ROWS)
@pytest.mark.parametrize("in_place", [True, False])
def test_fused_relu_on_short_rows_matches_torch_and_the_reference(R, in_place):
    _needs_kernel()
    x = _planted(R, "relu")
    x[::3] *= -1  # the planted values are a ReLU's output: give the ReLU something to do
    expected = torch.relu(x)
    stats = UnitStats.zeros(300)
    source = x.clone()
    out = source if in_place else torch.empty_like(source)
    assert stats.relu_(source, out, 2)
    assert torch.equal(out.nan_to_num(7.0), expected.nan_to_num(7.0))
    assert_matches(stats, brute(expected, 1))
    assert int(stats.active[0]) == 0 and int(stats.sample_active[1]) == 1


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    """The loader as in a new process, with its cache in ``tmp_path``."""
    monkeypatch.setenv("DEADRELU_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DEADRELU_NATIVE", raising=False)
    for name, value in (("_ops", None), ("_reason", None), ("_path", None), ("_job", False),
                        ("_building", False), ("_next_look", 0.0)):
        monkeypatch.setattr(native, name, value)
    return tmp_path


def test_a_failed_build_leaves_the_eager_path_and_a_reason(fresh_native, monkeypatch):
    monkeypatch.setenv("CXX", str(fresh_native / "no-such-compiler"))
    y = torch.randn(8, 3, 10)
    stats = UnitStats.zeros(3)
    stats.update(y, 2, 0.0, None, None, False, torch.empty(scratch_size(y)))
    assert_matches(stats, brute(y, 1))  # the scan goes on, eager, while the build runs
    assert not native.ensure(wait=True)
    assert "the C++ build failed" in native.reason() and "no-such-compiler" in native.reason()
    # with and without the Python binding (build.python_headers): each tried once
    from deadrelu.native import build

    failed = 1 if build.library_path() == build.library_path(python=False) else 2
    assert len(list(fresh_native.glob("*.failed"))) == failed
    assert not list(fresh_native.glob("*.lock"))
    # a later process reads the note instead of compiling again
    monkeypatch.setattr(native, "_reason", None)
    monkeypatch.setattr(native, "_building", False)
    assert not native.ensure(wait=False) and "the C++ build failed" in native.reason()


def test_a_job_that_fails_before_its_starter_resumes_leaves_no_lock(fresh_native, monkeypatch):
    # the worst interleaving, made certain: the launcher returns only once the job has
    # failed and removed its lock; nothing the starter does afterwards may re-create it
    # (the job writes its own pid into the lock, never the starter)
    from deadrelu.native import build

    monkeypatch.setenv("CXX", str(fresh_native / "no-such-compiler"))
    target = build.library_path()
    lock = build._lock(target)
    real = subprocess.run

    def finished(*args, **kwargs):
        out = real(*args, **kwargs)
        deadline = time.monotonic() + 60
        while (lock.exists() or not build.marker(target).exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return out

    monkeypatch.setattr(build.subprocess, "run", finished)
    assert build.start(target) is True
    assert build.marker(target).exists()
    assert not lock.exists()


_FAKE_COMPILER = """#!/bin/sh
# stands in for c++: waits, then "produces" the library by copying a built one
sleep {delay}
for last; do :; done
cp "{library}" "$last"
"""

_FIRST_SCAN = """
import torch
from deadrelu import native
from deadrelu.stats import UnitStats, scratch_size
y = torch.randn(6, 4, 9)
stats = UnitStats.zeros(4)
print(native.update(stats.tensors, y, 2, 0.0, None, None, True))  # not built yet: eager
print(native.ensure(wait={wait}))
"""


def _fake_compiler(tmp_path, delay: float):
    _needs_kernel()
    script = tmp_path / "fake-cxx"
    script.write_text(_FAKE_COMPILER.format(delay=delay, library=native._path))
    script.chmod(0o755)
    return script


def _first_scan(tmp_path, delay: float, wait: bool):
    """A new process's first CPU update with an empty cache and a stand-in compiler."""
    cache = tmp_path / "cache"
    env = {**os.environ, "DEADRELU_CACHE_DIR": str(cache),
           "CXX": str(_fake_compiler(tmp_path, delay))}
    done = subprocess.run([sys.executable, "-c", _FIRST_SCAN.format(wait=wait)], env=env,
                          capture_output=True, text=True, check=False)
    return done, cache


def test_the_first_use_builds_in_the_background_and_later_calls_use_the_kernel(tmp_path):
    done, cache = _first_scan(tmp_path, 0.3, wait=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
    assert len(list(cache.glob("stats-*.so"))) == 1 and not list(cache.glob("*.lock"))


def test_the_background_build_finishes_after_the_process_that_started_it_exits(tmp_path):
    done, cache = _first_scan(tmp_path, 1.0, wait=False)
    assert done.stdout.split() == ["False", "False"], done.stderr
    deadline = time.monotonic() + 30
    while list(cache.glob("*.lock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(cache.glob("stats-*.so"))) == 1


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


# -- the fused ReLU: the collector lets the kernel compute a known ReLU site ----------------


class _AllReluForms(torch.nn.Module):
    """Every ReLU spelling the fused path stands in for, on conv outputs (fused) and on
    Linear outputs (where torch's ReLU and a statistics pass cost less: not fused)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.act_inplace = torch.nn.ReLU(inplace=True)
        self.fc = torch.nn.Linear(6 * 25, 10)
        with torch.no_grad():
            self.fc.bias[0] = -1e4  # a dead unit

    def forward(self, x):
        h = self.act(self.conv(x))
        h = self.act_inplace(h - 0.1)
        h = torch.nn.functional.relu(h - 0.2)
        h = torch.nn.functional.relu(h - 0.1, inplace=True)
        h = torch.relu(h - 0.05).relu_()
        h = torch.relu_(h - 0.01)
        z = self.fc(h.flatten(1))
        return torch.relu_(z - 0.1).relu() + torch.relu(-z)


def _run(model, batches, eager: bool):
    from deadrelu.collector import Collector

    outputs = []
    with torch.no_grad(), Collector(model) as collector:
        context = native.disabled() if eager else _nothing()
        with context:
            outputs = [model(b.clone()) for b in batches]
    return outputs, {name: site.stats for name, site in collector.sites.items()}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _batches(n=4, size=9):
    return [torch.randn(size, 3, 5, 5) for _ in range(n)]


def test_fused_relu_gives_the_same_outputs_and_counters_as_the_eager_path(monkeypatch):
    _needs_kernel()
    calls = []
    for name in ("relu_into", "relu_view"):  # the general path and the planned one
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, real=real: calls.append(1) or real(*a))
    model = _AllReluForms().eval()
    batches = _batches()
    batches[2][0, 0, 0, 0] = float("nan")  # NaN stays NaN through the ReLU and is counted
    with torch.no_grad():
        plain = [model(b.clone()) for b in batches]
    fused_out, fused = _run(model, batches, eager=False)
    assert len(calls) == 3 * 7, "every spelling on a conv output is fused from batch 2 on"
    eager_out, eager = _run(model, batches, eager=True)
    for a, b, c in zip(plain, fused_out, eager_out, strict=True):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))
        assert torch.equal(a.nan_to_num(7.0), c.nan_to_num(7.0))
    assert fused.keys() == eager.keys() and len(fused) == 10
    for name in fused:
        for key, value in fused[name].tensors.items():
            expected = eager[name].tensors[key]
            if key in ("sum", "abs_sum"):
                assert torch.allclose(value, expected, rtol=1e-5, atol=1e-4), (name, key)
            else:
                assert torch.equal(value, expected), (name, key)
        assert fused[name].samples == eager[name].samples
    assert int(fused["act"].nonfinite.sum()) >= 1


def test_fused_relu_matches_the_brute_force_reference_on_a_planted_dead_unit():
    _needs_kernel()
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(inplace=True)).eval()
    with torch.no_grad():
        model[0].bias[1] = -1e4
    batches = [torch.randn(20, 4) for _ in range(3)]
    _, stats = _run(model, batches, eager=False)
    with torch.no_grad():
        ys = [torch.relu(model[0](b)) for b in batches]
    assert_matches(stats["1"], brute(ys, 1))
    assert int(stats["1"].active[1]) == 0


def test_fused_in_place_relu_bumps_the_version_counter_like_torch():
    _needs_kernel()
    relu = torch.nn.ReLU(inplace=True)
    model = torch.nn.Sequential(torch.nn.Identity(), relu).eval()
    from deadrelu.collector import Collector

    with torch.no_grad(), Collector(model):
        model(torch.randn(4, 8))  # the first forward finds the site
        x = torch.randn(4, 8)
        before = x._version
        out = model(x)
    assert out is x and x._version == before + 1
    assert bool((x >= 0).all())


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_other_memory_layouts_give_the_same_counters(layout):
    _needs_kernel()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.ReLU()).eval()

    def convert(b):
        if layout == "channels_last":
            return b.contiguous(memory_format=torch.channels_last)
        return b.transpose(2, 3)  # not contiguous in any format: the eager path runs

    batches = [convert(b) for b in _batches(3, 11)]
    _, fused = _run(model, batches, eager=False)
    _, eager = _run(model, batches, eager=True)
    for key in ("active", "sample_active", "max"):
        assert torch.equal(fused["1"].tensors[key], eager["1"].tensors[key]), key


def test_training_forward_keeps_the_autograd_graph():
    _needs_kernel()
    from deadrelu.collector import Collector

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).train()
    with Collector(model):
        model(torch.randn(5, 4))
        out = model(torch.randn(5, 4))
    assert out.requires_grad
    out.sum().backward()
    assert model[0].weight.grad is not None


def test_a_build_lock_left_by_a_dead_job_is_stale(tmp_path):
    from deadrelu.native import build

    lock = tmp_path / "stats-x.lock"
    lock.write_text("")  # a job being started right now
    assert not build._stale(lock)
    lock.write_text(str(os.getpid()))  # a running job
    assert not build._stale(lock)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock.write_text(dead.stdout.strip())  # a job that was killed
    assert build._stale(lock)


def test_the_counters_block_is_in_the_kernels_order():
    from deadrelu.stats import REDUCTIONS

    assert tuple(REDUCTIONS) == native.COUNTERS
    stats = UnitStats.zeros(5)
    block = stats.__dict__["_block"]
    for i, name in enumerate(native.COUNTERS):
        assert stats.tensors[name].data_ptr() == block[i].data_ptr()


@pytest.mark.parametrize("direct", [True, False], ids=["python-binding", "torch-ops"])
def test_the_planned_calls_count_the_same_through_either_binding(monkeypatch, direct):
    # the library is a Python extension module where Python's headers were found at build
    # time (native._direct), else a torch.ops library only: both must give the same counts
    _needs_kernel()
    if direct and native._direct is None:
        pytest.skip("this build has no Python binding (no Python headers at build time)")
    calls = []
    if direct:  # every planned call goes through the binding
        binding = native._direct
        spy = type("Spy", (), {name: staticmethod(
            lambda *a, f=getattr(binding, name): calls.append(1) or f(*a))
            for name in ("stats_view", "relu_view")})
        monkeypatch.setattr(native, "_direct", spy)
    else:
        monkeypatch.setattr(native, "_direct", None)
    model = _AllReluForms().eval()
    batches = _batches()
    _, fused = _run(model, batches, eager=False)
    _, eager = _run(model, batches, eager=True)
    gelu = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU(), nn.Flatten(), nn.Linear(100, 6),
                         nn.Sigmoid()).eval()
    _, gelu_fused = _run(gelu, batches, eager=False)
    _, gelu_eager = _run(gelu, batches, eager=True)
    for got, want in ((fused, eager), (gelu_fused, gelu_eager)):
        assert got.keys() == want.keys()
        for name in got:
            for key, value in got[name].tensors.items():
                assert torch.allclose(value, want[name].tensors[key], rtol=1e-5, atol=1e-4), (
                    name, key)
            assert got[name].samples == want[name].samples
    assert bool(calls) == direct


def test_a_wrong_planned_view_is_refused_by_the_python_binding_too():
    _needs_kernel()
    if native._direct is None:
        pytest.skip("this build has no Python binding")
    y = torch.rand(4, 3, 5)
    block = torch.zeros(7, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="planned view"):
        native.stats_view(block, y, (4, 3, 6, 15, 5, True, 0.0, None, None, True))
    with pytest.raises(RuntimeError, match="storage"):
        native.stats_view(block, y, (4, 3, 5, 16, 5, True, 0.0, None, None, True))
    assert not block.any()


def test_a_library_without_the_python_binding_serves_where_the_binding_does_not_build(
        tmp_path):
    from deadrelu.native import build

    if build.supported() is not None or build.python_headers() is None:
        pytest.skip("needs a C++ compiler and Python's headers")
    # a compiler that refuses the Python binding's flags and builds the rest; in a new
    # process, as one process can load only one library of the kernel's op namespace
    cxx = tmp_path / "cxx"
    cxx.write_text(f"#!/bin/sh\ncase \" $* \" in *\" -DDEADRELU_PYTHON \"*) "
                   f"echo 'no Python.h here' >&2; exit 1;; esac\nexec {build.compiler()} \"$@\"\n")
    cxx.chmod(0o755)
    script = (
        "import torch\n"
        "from deadrelu import native\n"
        "from deadrelu.native import build\n"
        "from deadrelu.stats import UnitStats, scratch_size\n"
        "from tests.reference import assert_matches, brute\n"
        "assert native.ensure(wait=True), native.reason()\n"
        "assert native._direct is None and native._path == build.library_path(python=False)\n"
        "y = torch.rand(6, 4, 3)\n"
        "stats = UnitStats.zeros(4)\n"
        "stats.update(y, 2, 0.0, None, None, True, torch.empty(scratch_size(y)))\n"
        "assert_matches(stats, brute(y, 1))\n"
        "print('ok')\n"
    )
    env = {**os.environ, "DEADRELU_CACHE_DIR": str(tmp_path / "cache"), "CXX": str(cxx)}
    env.pop("DEADRELU_NATIVE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(Path(__file__).parent.parent))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert len(list((tmp_path / "cache").glob("*.failed"))) == 1
