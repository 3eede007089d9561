"""README statements a test can keep honest."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import deadrelu

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_scan_signature_matches_the_code():
    """The ``scan(...)`` line of the README names every parameter, in order, with its
    default, and marks the keyword-only ones (``*``) where the code does."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"`scan\((.*?)\)`", text, flags=re.S)
    assert match, "README has no `scan(...)` signature"
    documented = [p.strip() for p in " ".join(match.group(1).split()).split(",")]
    expected = []
    star = False
    for param in inspect.signature(deadrelu.scan).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            expected.append("*")
            star = True
        default = param.default
        expected.append(param.name if default is inspect.Parameter.empty
                        else f"{param.name}={default!r}")
    assert documented == expected


def test_readme_install_gives_the_cpu_route_for_users():
    text = README.read_text(encoding="utf-8")
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    # every install command pins torch: an unpinned one pulls the newest CUDA build
    commands = [line for line in text.splitlines() if line.startswith("pip install torch")]
    assert commands
    for line in commands:
        assert "torch==" in line, line
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "torch==2.13.0" in ci and "torch.version.cuda" in ci
