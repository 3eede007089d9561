"""pytest plugin: the ``deadrelu_scan`` fixture.

Registered through the ``pytest11`` entry point, so it is active wherever
deadrelu is installed (disable with ``-p no:deadrelu``). Importing it costs
nothing: torch is imported only when the fixture is used.

::

    def test_no_dead_units(deadrelu_scan, model, batches):
        report = deadrelu_scan(model, batches)
        assert report.summary()["dead_fraction"] < 0.05

When a test that used the fixture fails, each report it made is added to the
test's failure output as a "deadrelu" section (a per-layer table of dead units),
so the failure explains itself in the CI log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from deadrelu.report import Report

_REPORTS = pytest.StashKey[list]()


@pytest.fixture
def deadrelu_scan(request: pytest.FixtureRequest) -> Callable[..., Report]:
    """``deadrelu_scan(model, data, **scan_kwargs) -> Report`` (see :func:`deadrelu.scan`)."""
    reports: list[Report] = []
    request.node.stash[_REPORTS] = reports

    def run(model: Any, data: Any, **scan_kwargs: Any) -> Report:
        from deadrelu.scanning import scan

        report = scan(model, data, **scan_kwargs)
        reports.append(report)
        return report

    return run


def layer_table(report: Report) -> str:
    """Plain-text per-layer dead-unit table of one report."""
    rows = report.layer_records()
    width = max([len("layer"), *(len(r["layer"]) for r in rows)])
    lines = [f"{report.meta.get('model', 'model')} on {report.samples:,} samples",
             f"{'layer':<{width}}  {'units':>6}  {'dead':>6}  {'dead %':>7}"]
    lines += [f"{r['layer']:<{width}}  {r['units']:>6}  {r['dead']:>6}  "
              f"{r['dead_fraction'] * 100:>6.1f}%" for r in rows]
    s = report.summary()
    lines.append(f"{'total':<{width}}  {s['units']:>6}  {s['dead']:>6}  {s['dead_fraction'] * 100:>6.1f}%")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when != "call" or not rep.failed:
        return
    for report in item.stash.get(_REPORTS, []):
        rep.sections.append(("deadrelu", layer_table(report)))
