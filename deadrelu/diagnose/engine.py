"""``diagnose(report)``: run every selected rule over a report. Pure: never touches a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deadrelu.diagnose.context import Context
from deadrelu.diagnose.registry import RULES
from deadrelu.diagnose.selection import Selection
from deadrelu.findings import Finding

if TYPE_CHECKING:
    from collections.abc import Mapping

    from deadrelu.report import Report


def diagnose(report: Report, selection: Selection | Mapping[str, Any] | None = None) -> list[Finding]:
    """Findings for ``report``: most severe first, then in forward order (model-wide first).

    Args:
        report: a scan report (statistics, thresholds, weight evidence, metadata).
        selection: which rules to report; default: ``report.meta["selection"]`` if the scan
            stored one, else every rule.

    Raises:
        ConfigError: the selection names a code or prefix that matches no rule.
    """
    chosen = Selection.coerce(selection if selection is not None else report.meta.get("selection"))
    ctx = Context(report)
    findings: list[Finding] = []
    for rule in RULES:
        if chosen is not None and chosen.select is not None and not chosen.enabled(rule.code):
            continue
        for finding in rule.check(ctx):
            if finding.code != rule.code:
                raise RuntimeError(f"rule {rule.code} produced a finding coded {finding.code}")
            if chosen is None or chosen.enabled(finding.code, finding.layer):
                findings.append(finding)
    order = {v.name: v.info.order for v in ctx.sites}
    findings.sort(key=lambda f: (-f.severity.rank,
                                 -1 if f.layer is None else order.get(f.layer, len(order)),
                                 f.code))
    return findings
