"""``--help`` as a newcomer reads it: golden text at 80 columns, no colour, per command.

Help looks like the rest of the Python CLI world (see :mod:`deadrelu.cli.help`): flags
without a value placeholder, arguments by name (``MODEL``, not ``{MODEL}`` or
``<path>``), choices listed once, no word broken across lines. The golden files pin
the text with the typer and rich versions of the ``dev`` extra; after changing a help
text, regenerate them with ``DEADRELU_UPDATE_GOLDEN=1 python -m pytest tests/test_help.py``
and read the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deadrelu.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("DEADRELU_UPDATE_GOLDEN") == "1"


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONPATH": str(ROOT)}
    for forcing in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS"):  # typer forces a terminal
        env.pop(forcing, None)
    # As the installed `deadrelu` script: the usage line names the program as typed.
    script = "import sys; sys.argv[0] = 'deadrelu'; from deadrelu.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", script, *command, "--help"], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # Trailing padding is invisible and editors strip it; compare without it.
    return "\n".join(line.rstrip() for line in done.stdout.splitlines()) + "\n"


@pytest.fixture(scope="module", params=["", *COMMANDS])
def help_text(request) -> tuple[str, str]:
    name = request.param
    return name, _help(*([name] if name else []))


def test_help_golden(help_text):
    name, text = help_text
    path = GOLDEN / f"help_{name or 'deadrelu'}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with DEADRELU_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def test_help_has_no_type_placeholders(help_text):
    name, text = help_text
    assert not re.search(r"<(bool|path|str|int|float|list\[[^\]]*\])>", text), name
    assert "{MODEL}" not in text and "{" not in text.splitlines()[1], name
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert re.fullmatch(r" Usage: deadrelu( \w+)? \[OPTIONS\]( [A-Z_.a-z]+(\.\.\.)?| \[CODE\]"
                        r"| COMMAND \[ARGS\]\.\.\.)", usage), usage


def test_help_lines_fit_80_columns_and_flags_stand_alone(help_text):
    name, text = help_text
    assert all(len(line) <= 80 for line in text.splitlines()), name
    for flag in ("--quiet", "--no-progress", "--debug", "--help", "--exit-zero",
                 "--trust-checkpoint", "--version"):
        for line in text.splitlines():
            if re.search(rf"│ {flag}\b", line):
                # the flag (and its short form) is followed straight by its help text
                assert re.match(rf"│ {flag}(\s+-\w)?\s{{2,}}[A-Z]", line), line


def test_help_choices_are_listed_once(help_text):
    name, text = help_text
    assert "table|json" not in text and "redo|dohare" not in text, name
