"""deadrelu never modifies, blocks on, or exits silently because of a user's input.

* An output (``-o``, ``--csv``, ``--json``, ``--plot``, ``$GITHUB_STEP_SUMMARY``) that is an
  input under another name (a hard link or symlink to the checkpoint, the config, a report,
  a file inside the data folder) is refused with one line, exit 2, the input unchanged.
* Only regular files are read: a FIFO as ``--data``, inside a data folder, or as a report
  gives one line and exit 2 instead of hanging (run in a subprocess with a timeout, so a
  regression fails instead of hanging the suite). ``--config`` is the exception: a pipe
  (``--config <(...)``) or ``/dev/null`` is accepted there on purpose.
* A config that is not UTF-8 is one line, exit 2.
* ``sys.exit(n)`` in the user's model or data code is one line naming it, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]
DIGITS = SM / "data" / "digits_test.npy"

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A checkpoint, a series of checkpoints, data and a config, all owned by the 'user'."""
    shutil.copy(SM / "mlp_high_lr.pt", tmp_path / "model.pt")
    shutil.copytree(SM / "series", tmp_path / "series")
    shutil.copy(DIGITS, tmp_path / "digits.npy")
    (tmp_path / "shards").mkdir()
    x = np.load(DIGITS)
    np.save(tmp_path / "shards" / "a.npy", x[:100])
    np.save(tmp_path / "shards" / "b.npy", x[100:])
    (tmp_path / "deadrelu.toml").write_text("batch-size = 32\n")
    return tmp_path


def _commands(work: Path, out_option: str, out: Path) -> dict[str, list[object]]:
    data = ["--data", work / "digits.npy", "-q"]
    return {
        "scan": ["scan", work / "model.pt", *MLP, *data, "-f", "json", out_option, out],
        "check": ["check", work / "model.pt", *MLP, *data, "--max-dead", "100%", "-f", "junit",
                  out_option, out],
    }


# -- outputs are never an input under another name -----------------------------------------


@pytest.mark.parametrize("command", ["scan", "check"])
@pytest.mark.parametrize("link", ["hard", "symlink"])
def test_output_linked_to_the_checkpoint_is_refused(cli, work, command, link):
    out = work / "report.json"
    (os.link if link == "hard" else os.symlink)(work / "model.pt", out)
    before = _digest(work / "model.pt")
    line = cli(*_commands(work, "-o", out)[command]).one_error_line()
    assert "--output" in line and "model.pt" in line
    assert _digest(work / "model.pt") == before


@pytest.mark.parametrize("command", ["scan", "check"])
def test_output_hard_linked_to_the_config_is_refused(cli, work, command):
    out = work / "report.json"
    os.link(work / "deadrelu.toml", out)
    args = [*_commands(work, "-o", out)[command], "--config", work / "deadrelu.toml"]
    line = cli(*args).one_error_line()
    assert "deadrelu.toml" in line
    assert (work / "deadrelu.toml").read_text() == "batch-size = 32\n"


def test_output_hard_linked_to_a_file_inside_the_data_folder_is_refused(cli, work):
    out = work / "report.json"
    os.link(work / "shards" / "b.npy", out)
    before = _digest(work / "shards" / "b.npy")
    line = cli("scan", work / "model.pt", *MLP, "--data", work / "shards", "-f", "json",
               "-o", out, "-q").one_error_line()
    assert "b.npy" in line and "hard link" in line
    assert _digest(work / "shards" / "b.npy") == before


@pytest.mark.parametrize("option", ["--csv", "--json", "--plot", "--output"])
def test_track_outputs_linked_to_a_checkpoint_are_refused(cli, work, option):
    target = work / "series" / "step_300.pt"
    out = work / ("trend.png" if option == "--plot" else "trend.out")
    os.link(target, out)
    before = _digest(target)
    line = cli("track", work / "series", *MLP, "--data", work / "digits.npy", option, out,
               "-q").one_error_line()
    assert option in line and "step_300.pt" in line
    assert _digest(target) == before


def test_track_refuses_two_outputs_naming_one_file(cli, work):
    line = cli("track", work / "series", *MLP, "--data", work / "digits.npy", "--csv",
               work / "t.out", "--json", work / "t.out", "-q").one_error_line()
    assert "same file" in line


def test_merge_output_hard_linked_to_a_report_is_refused(cli, work):
    paths = []
    for name in ("a", "b"):
        out = work / f"{name}.json"
        result = cli("scan", work / "model.pt", *MLP, "--data", work / "shards" / f"{name}.npy",
                     "-f", "json", "-o", out, "-q")
        assert result.code == 0, result.err
        paths.append(out)
    os.link(paths[0], work / "merged.json")
    before = _digest(paths[0])
    line = cli("merge", *paths, "-o", work / "merged.json").one_error_line()
    assert "a.json" in line
    assert _digest(paths[0]) == before


def test_github_step_summary_linked_to_the_checkpoint_is_refused(cli, work, monkeypatch):
    os.link(work / "model.pt", work / "summary.md")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(work / "summary.md"))
    before = _digest(work / "model.pt")
    result = cli("check", work / "model.pt", *MLP, "--data", work / "digits.npy",
                 "--max-dead", "100%", "-f", "github", "-q")
    assert result.code == 2 and "$GITHUB_STEP_SUMMARY" in result.err
    assert _digest(work / "model.pt") == before


def test_an_unrelated_existing_output_is_still_overwritten(cli, work):
    out = work / "report.json"
    out.write_text("old")
    result = cli("scan", work / "model.pt", *MLP, "--data", work / "digits.npy", "-f", "json",
                 "-o", out, "-q")
    assert result.code == 0, result.err
    assert json.loads(out.read_text())["schema_version"] == 1


# -- only regular files are read -----------------------------------------------------------


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "deadrelu", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _fifo_cases(work: Path) -> dict[str, list[object]]:
    os.mkfifo(work / "pipe.npy")
    images = work / "images"
    shutil.copytree(SM / "data" / "digits_png", images)
    os.mkfifo(images / "0" / "000_fifo.png")
    os.mkfifo(work / "shards" / "c.npy")
    os.mkfifo(work / "report.json")
    os.mkfifo(work / "report2.json")
    data = ["--data", work / "pipe.npy"]
    return {
        "scan --data FIFO": ["scan", work / "model.pt", *MLP, *data],
        "check --data FIFO": ["check", work / "model.pt", *MLP, *data],
        "track --data FIFO": ["track", work / "series", *MLP, *data],
        "FIFO in an image folder": ["scan", SM / "cnn_full.pt", "-I", SM, "--data", images],
        "FIFO in a tensor folder": ["scan", work / "model.pt", *MLP, "--data", work / "shards"],
        "merge FIFO": ["merge", work / "report.json", work / "report2.json"],
        "--baseline FIFO": ["check", work / "model.pt", *MLP, "--data", work / "digits.npy",
                            "--baseline", work / "report.json"],
    }


@needs_fifo
def test_fifos_are_refused_not_read(work):
    for case, args in _fifo_cases(work).items():
        done = _run(*args, "-q", cwd=work)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (case, done.stderr)
        assert len(lines) == 1 and "FIFO" in lines[0], (case, lines)


@needs_fifo
def test_open_data_refuses_a_fifo(work):
    from deadrelu.errors import DataError
    from deadrelu.loading import open_data

    os.mkfifo(work / "pipe.npy")
    with pytest.raises(DataError, match="FIFO"):
        open_data(work / "pipe.npy")


# -- config encoding -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["scan", "check", "track"])
def test_config_that_is_not_utf8_is_one_line(cli, work, command):
    (work / "bad.toml").write_bytes(b'[tool.deadrelu]\nselect = ["\xff\xfe"]\n')
    model = work / ("series" if command == "track" else "model.pt")
    line = cli(command, model, *MLP, "--data", work / "digits.npy", "--config",
               work / "bad.toml", "-q").one_error_line()
    assert "not UTF-8" in line and "bad.toml" in line


# -- sys.exit in the user's code -----------------------------------------------------------

USER_CODE = '''
import sys
import torch
from torch import nn


def factory():
    sys.exit(7)


def data():
    sys.exit(5)


def batches():
    yield torch.zeros(4, 64)
    sys.exit(6)


class ExitingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                 nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        sys.exit(9)
'''


@pytest.mark.parametrize(("arch", "data", "words"), [
    ("user.py:factory", None, "--arch 'user.py:factory' called sys.exit(7)"),
    ("script.py:Net", None, "importing script.py called sys.exit(3)"),
    (None, "user.py:data", "--data 'user.py:data' called sys.exit(5)"),
    (None, "user.py:batches", "producing batch 1 called sys.exit(6)"),
    ("user.py:ExitingNet", None, "the model's forward called sys.exit(9)"),
])
@pytest.mark.parametrize("command", ["scan", "check", "track"])
def test_sys_exit_in_user_code_is_one_line(cli, work, monkeypatch, command, arch, data, words):
    (work / "user.py").write_text(USER_CODE)
    (work / "script.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.chdir(work)
    model = "series" if command == "track" else "model.pt"
    args = [command, model, "--arch", arch or f"{SM}/models.py:DigitsMLP",
            "--data", data or "digits.npy", "-q"]
    line = cli(*args).one_error_line()
    assert words in line


@pytest.mark.parametrize("link", ["same", "hard"])
def test_junit_error_file_never_lands_on_an_input(cli, work, link):
    # An error before the files were compared (a bad --rare) used to write the JUnit
    # error report to --output even when that was the checkpoint itself.
    out = work / "model.pt"
    if link == "hard":
        out = work / "results.xml"
        os.link(work / "model.pt", out)
    before = _digest(work / "model.pt")
    line = cli("check", work / "model.pt", *MLP, "--data", work / "digits.npy", "--rare", "zz",
               "-f", "junit", "-o", out).one_error_line()
    assert "--rare" in line
    assert _digest(work / "model.pt") == before


def test_junit_error_file_is_still_written_elsewhere(cli, work):
    out = work / "results.xml"
    cli("check", work / "model.pt", *MLP, "--data", work / "digits.npy", "--rare", "zz",
        "-f", "junit", "-o", out).one_error_line()
    assert "<testsuite" in out.read_text()


@pytest.mark.parametrize("args, says", [
    (["scan", "model.pt", "--data", "d.npy", "--max-length", "abc"],
     "invalid value for '--max-length'"),
    (["scan", "model.pt", "--data", "d.npy", "--no-such-option"], "no such option: --no-such-option"),
    (["scan", "model.pt"], "missing option '--data'"),
    (["no-such-command"], "no such command 'no-such-command'"),
    (["check", "model.pt", "--data", "d.npy", "--batch-size", "big"],
     "invalid value for '--batch-size'"),
])
def test_usage_errors_are_one_line_naming_the_commands_help(cli, args, says):
    result = cli(*args)
    assert result.code == 2 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"error: {says}") and lines[0].endswith("--help'"), lines[0]
