"""``diagnose(subject)``: run every selected rule over a report's facts. Pure: never touches a model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deadrelu.diagnose.context import Context
from deadrelu.diagnose.registry import RULES
from deadrelu.diagnose.selection import Selection
from deadrelu.findings import Finding

if TYPE_CHECKING:
    from collections.abc import Mapping

    from deadrelu.diagnose.subject import Subject


def diagnose(subject: Subject, selection: Selection | Mapping[str, Any] | None = None) -> list[Finding]:
    """Findings for ``subject``: most severe first, then in forward order (model-wide first).

    A report's findings are computed by ``deadrelu.report.diagnosed(report)``, which
    builds the subject; this function is the engine behind it.

    Args:
        subject: what the rules read (statistics, verdicts, thresholds, weight evidence,
            data statistics; see :class:`~deadrelu.diagnose.subject.Subject`).
        selection: which rules to report; default: ``subject.selection`` if the scan stored
            one, else every rule.

    Raises:
        ConfigError: the selection names a code or prefix that matches no rule.
    """
    chosen = Selection.coerce(selection if selection is not None else subject.selection)
    ctx = Context(subject)
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
