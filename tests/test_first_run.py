"""The first run on a fresh machine (an empty kernel cache, as on every CI runner).

The first CPU scan starts the background build of the fused kernel
(:mod:`deadrelu.native.build`). Nothing of that build may ever be visible: no
``ResourceWarning: subprocess N is still running`` when the CLI exits before the build
ends, nothing on stderr under ``--quiet``, and exactly one ``error:`` line for exit 2.
The compiler here is a stand-in that takes a few seconds and fails, so the build is
still running when the CLI exits (the case that used to leak), and no real compile
loads the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
BAD = SM / "series" / "step_400.pt"
LOAD = ["--arch", f"{SM / 'models.py'}:DigitsMLP", "--data", str(SM / "data" / "digits_test.npy")]

pytestmark = pytest.mark.skipif(not BAD.exists(), reason="sample models not built")

_SLOW_FAILING_COMPILER = "#!/bin/sh\nsleep 4\necho 'stand-in compiler: no' >&2\nexit 1\n"


@pytest.fixture
def fresh_machine(tmp_path):
    """Environment of a fresh CI runner: an empty cache, a compiler that is still busy
    when the CLI exits. ResourceWarnings are switched on, so a leak would show."""
    from deadrelu.native import build

    cxx = tmp_path / "slow-cxx"
    cxx.write_text(_SLOW_FAILING_COMPILER)
    cxx.chmod(0o755)
    cache = tmp_path / "cache"
    env = {**os.environ, "DEADRELU_CACHE_DIR": str(cache), "CXX": str(cxx),
           "PYTHONWARNINGS": "default::ResourceWarning", "COLUMNS": "80", "NO_COLOR": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("DEADRELU_NATIVE", None)
    old = os.environ.get("CXX")
    os.environ["CXX"] = str(cxx)
    try:
        reason = build.supported()
    finally:
        if old is None:
            os.environ.pop("CXX", None)
        else:
            os.environ["CXX"] = old
    if reason is not None:
        pytest.skip(f"no background build on this machine: {reason}")
    return env, cache


def _deadrelu(env, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deadrelu", *map(str, args)], env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def _build_ran(cache: Path) -> None:
    """The run did start the background build, and it ended on its own after the CLI."""
    deadline = time.monotonic() + 60
    while list(cache.glob("*.lock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(cache.glob("*.lock"))
    notes = list(cache.glob("*.failed"))
    assert len(notes) == 1 and "stand-in compiler: no" in notes[0].read_text()


def test_first_run_exit_1_quiet_prints_only_the_verdict(fresh_machine):
    env, cache = fresh_machine
    done = _deadrelu(env, "check", BAD, *LOAD, "--max-dead", "20%", "--quiet")
    assert done.returncode == 1
    assert done.stdout == "deadrelu check: 1 of 1 gate failed\n"
    assert done.stderr == ""
    _build_ran(cache)


def test_first_run_exit_1_table_has_no_build_noise(fresh_machine):
    env, cache = fresh_machine
    done = _deadrelu(env, "check", BAD, *LOAD, "--max-dead", "20%", "--no-progress")
    assert done.returncode == 1
    assert "FAIL" in done.stdout
    assert "Warning" not in done.stderr and "subprocess" not in done.stderr, done.stderr
    _build_ran(cache)


def test_first_run_exit_2_after_a_scan_is_one_line(fresh_machine, tmp_path):
    env, cache = fresh_machine
    missing = tmp_path / "no-such-folder" / "report.json"
    done = _deadrelu(env, "scan", BAD, *LOAD, "--format", "json", "-o", missing, "--quiet")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write --output"), done.stderr
    _build_ran(cache)
