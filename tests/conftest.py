import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["native", "eager"])
def stats_path(request):
    """Run a test once with the fused CPU kernel and once with the eager statistics.

    Both must match the brute-force reference; the native run is skipped where the
    kernel cannot be built (no C++ compiler).
    """
    from deadrelu import native

    if request.param == "eager":
        with native.disabled():
            yield request.param
        return
    if not native.available():
        pytest.skip(f"fused kernel not available here: {native.reason()}")
    yield request.param


@pytest.fixture(autouse=True)
def _outputs_match_their_schemas(monkeypatch):
    """Every SARIF log, JUnit document and JSON report the suite produces in-process is
    validated against the schema its consumers use (see ``tests/schemas.py``), so a
    test that only looks at one field still catches a file a real consumer rejects."""
    import schemas

    import deadrelu.ci as ci
    import deadrelu.ci.junit as junit
    import deadrelu.ci.sarif as sarif
    import deadrelu.export as export
    from deadrelu.report import Report

    def checked(module, name, validate):
        original = getattr(module, name)

        def render(*args, **kwargs):
            text = original(*args, **kwargs)
            validate(text)
            return text

        monkeypatch.setattr(module, name, render)

    for name in ("render_sarif", "render_sarif_error"):
        checked(sarif, name, schemas.validate_sarif)
    for name in ("render_junit", "render_junit_error"):
        checked(junit, name, schemas.validate_junit)
    for name in ("render_json", "render_json_error"):
        checked(ci, name, lambda text: schemas.validate_json("check", text))
    original_to_json = Report.to_json

    def to_json(self, **kwargs):
        text = original_to_json(self, **kwargs)
        schemas.validate_json("report", text)
        return text

    monkeypatch.setattr(Report, "to_json", to_json)
    checked(export, "to_json", lambda text: schemas.validate_json("report", text))


class CliResult(NamedTuple):
    """What ``deadrelu ARGS`` run in-process gave (unpacks as ``code, out, err``)."""

    code: int
    out: str
    err: str

    def one_error_line(self) -> str:
        """The one ``error: ...`` line of a failed command (exit 2, no traceback)."""
        lines = self.err.strip().splitlines()
        assert self.code == 2, (self.out, self.err)
        assert len(lines) == 1 and lines[0].startswith("error:"), self.err
        assert "bug" not in lines[0] and "Traceback" not in self.err
        return lines[0]


@pytest.fixture
def cli_columns() -> int:
    """Terminal width for :func:`cli` (rich reads ``COLUMNS``): wide enough that no asserted
    phrase wraps; a test module overrides this fixture for wider output."""
    return 160


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        cli_columns: int) -> Callable[..., CliResult]:
    """Run ``deadrelu ARGS`` in-process (the console script's code path, one-line errors
    included); returns its exit code, stdout and stderr."""
    from deadrelu.cli import main

    monkeypatch.setenv("COLUMNS", str(cli_columns))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)  # set on GitHub's runners

    def run(*args: object) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def forget_models_module() -> Iterator[None]:
    """Whole-model pickles import sample_models/models.py as top-level ``models``: do not
    leave it behind for other test modules (use with ``pytest.mark.usefixtures``)."""
    had = "models" in sys.modules
    yield
    if not had:
        sys.modules.pop("models", None)


def digests(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file at or below ``paths``: equal before and after a command
    that must not modify its inputs."""
    out = {}
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out
