"""How loudly CI formats show a finding: decided once, so SARIF and GitHub annotations agree."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deadrelu.findings import Finding


def finding_level(finding: Finding, gated: list[Finding]) -> str:
    """``error`` / ``warning`` / ``note``: how loudly CI formats show ``finding``.

    ``error`` means "this fails the check": only findings a failed ``fail-on`` gate
    matched. Every other finding is advice (``warning``, or ``note`` for ``info``
    severity), whatever its own severity, since the build passes with it. SARIF uses
    these levels as they are, GitHub annotations with ``note`` spelled ``notice``.
    """
    if finding in gated:
        return "error"
    return "note" if finding.severity.value == "info" else "warning"
