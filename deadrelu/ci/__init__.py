"""Output formats of ``deadrelu check`` for people and CI systems.

One closed set of formats (:class:`CheckFormat`), one function per format, each
taking the same :class:`CheckRun` (the gate outcome, the report it judged and
where the model file is) and returning text. The reporter only presents:
nothing here decides whether a gate passed.

==========  =================================================================
table       rich table for a terminal (:mod:`deadrelu.ci.text`)
markdown    a PR comment / job summary (:mod:`deadrelu.ci.text`)
github      workflow annotations (:mod:`deadrelu.ci.github`)
junit       JUnit XML, one test case per gate and layer (:mod:`deadrelu.ci.junit`)
sarif       SARIF 2.1.0 for code-scanning dashboards (:mod:`deadrelu.ci.sarif`)
json        the outcome as JSON (below; schema ``deadrelu/schemas/check.schema.json``)
html        one offline page: gates, then the report with charts (:mod:`deadrelu.html`)
==========  =================================================================

Every format also has a way to say that the check could not run (a missing
checkpoint, unreadable data): :func:`render_error`, so that ``-o`` always leaves a
file a CI step can upload. A finding's level is decided once, by :func:`finding_level`,
so the SARIF results and the GitHub annotations of one run always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from deadrelu.ci.levels import finding_level

if TYPE_CHECKING:
    from deadrelu.findings import Finding
    from deadrelu.gates import GateOutcome
    from deadrelu.report import Report

#: Version of the ``check --format json`` document (``deadrelu/schemas/check.schema.json``).
#: Raised when a field changes meaning or disappears; adding a field keeps it.
CHECK_SCHEMA_VERSION = 1


class CheckFormat(str, Enum):
    """The ``--format`` values of ``deadrelu check``."""

    table = "table"
    json = "json"
    github = "github"
    junit = "junit"
    sarif = "sarif"
    markdown = "markdown"
    html = "html"


@dataclass(frozen=True)
class CheckRun:
    """What every format renders.

    Attributes:
        outcome: the gate results.
        report: the scan the gates judged.
        model_path: the model file as given on the command line (annotation and SARIF
            location; keep it relative to the repository root for GitHub).
        baseline_path: the baseline report, if one was compared.
    """

    outcome: GateOutcome
    report: Report
    model_path: str | None = None
    baseline_path: str | None = None

    @property
    def model_label(self) -> str:
        return self.model_path or str(self.report.meta.get("model", "model"))

    def headline(self) -> str:
        """``"deadrelu check: 2 of 5 gates failed"`` / ``"... all 5 gates passed"``."""
        total, failed = len(self.outcome.results), len(self.outcome.failures)
        gates = "gate" if total == 1 else "gates"
        if failed:
            return f"deadrelu check: {failed} of {total} {gates} failed"
        if total == 1:
            return "deadrelu check: the 1 gate passed"
        return f"deadrelu check: all {total} gates passed"

    @property
    def gated(self) -> list[Finding]:
        """Findings that a failed ``fail-on`` gate matched (they fail the check)."""
        return [f for r in self.outcome.failures for f in r.findings]

    def summary_line(self) -> str:
        """``"384 units in 3 layers, 256 dead (66.7%), 360 samples"``."""
        s = self.report.summary()
        return (f"{s['units']:,} units in {s['layers']} layers, {s['dead']:,} dead "
                f"({s['dead_fraction'] * 100:.1f}%), {s['samples']:,} samples")


def strict_json(doc: Any) -> str:
    """``doc`` as strict JSON: a non-finite float (NaN, ±inf) is written as ``null``, as
    in the scan report, since ``NaN``/``Infinity`` tokens are not JSON and many parsers
    (``jq``, JavaScript's ``JSON.parse``) reject them."""
    from deadrelu.report import jsonable

    return json.dumps(jsonable(doc), indent=2, allow_nan=False)


def render_json(run: CheckRun) -> str:
    """The outcome, the report's summary and findings as one JSON document."""
    from deadrelu import __version__

    doc: dict[str, Any] = {
        "schema_version": CHECK_SCHEMA_VERSION,
        "tool": "deadrelu",
        "version": __version__,
        "model": run.model_label,
        "baseline": run.baseline_path,
        "error": None,
        **run.outcome.to_dict(),
        "summary": run.report.summary(),
        "findings": [f.to_dict() for f in run.report.findings],
    }
    return strict_json(doc)


def render_json_error(model_label: str, message: str) -> str:
    """The JSON document of a check that could not run: ``passed`` false, ``error`` set."""
    from deadrelu import __version__

    doc: dict[str, Any] = {
        "schema_version": CHECK_SCHEMA_VERSION, "tool": "deadrelu", "version": __version__,
        "model": model_label, "baseline": None, "error": message, "passed": False,
        "failed": 0, "gates": [], "results": [], "notes": [], "summary": None, "findings": [],
    }
    # no number in it: plain json, so an early error never waits for numpy/torch to import
    return json.dumps(doc, indent=2, allow_nan=False)


def render_error(fmt: CheckFormat | str, model_label: str, message: str) -> str:
    """What ``fmt`` says when the check could not run (bad input; exit code 2).

    Without it a CI dashboard reading the file would show nothing, or an old file.
    """
    fmt = CheckFormat(fmt)
    if fmt is CheckFormat.json:
        return render_json_error(model_label, message)
    if fmt is CheckFormat.github:
        from deadrelu.ci.github import annotation

        return annotation("error", message, title="deadrelu check could not run") + "\n"
    if fmt is CheckFormat.junit:
        from deadrelu.ci.junit import render_junit_error

        return render_junit_error(model_label, message)
    if fmt is CheckFormat.sarif:
        from deadrelu.ci.sarif import render_sarif_error

        return render_sarif_error(model_label, message)
    if fmt is CheckFormat.markdown:
        from deadrelu.ci.text import render_markdown_error

        return render_markdown_error(model_label, message)
    if fmt is CheckFormat.html:
        from deadrelu.html import check_error_page

        return check_error_page(model_label, message)
    return f"deadrelu check could not run: {message}\n"


def render(fmt: CheckFormat | str, run: CheckRun, *, width: int | None = None) -> str:
    """Render ``run`` in ``fmt``; ``width`` sets the table format's console width."""
    fmt = CheckFormat(fmt)
    if fmt is CheckFormat.json:
        return render_json(run)
    if fmt is CheckFormat.github:
        from deadrelu.ci.github import render_annotations

        return render_annotations(run)
    if fmt is CheckFormat.junit:
        from deadrelu.ci.junit import render_junit

        return render_junit(run)
    if fmt is CheckFormat.sarif:
        from deadrelu.ci.sarif import render_sarif

        return render_sarif(run)
    if fmt is CheckFormat.html:
        from deadrelu.html import check_page

        return check_page(run)
    from deadrelu.ci.text import render_markdown, render_table_text

    if fmt is CheckFormat.markdown:
        return render_markdown(run)
    return render_table_text(run, width=width)


__all__ = ["CHECK_SCHEMA_VERSION", "CheckFormat", "CheckRun", "finding_level", "render",
           "render_error", "render_json", "strict_json"]
