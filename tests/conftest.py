import sys
from pathlib import Path

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
