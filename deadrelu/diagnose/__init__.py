"""Diagnosis: turn statistics and read-only weight evidence into findings.

(Interface only until the rules land: ``collect_evidence`` and ``diagnose``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from deadrelu.findings import Finding

if TYPE_CHECKING:
    from deadrelu.collector import Site
    from deadrelu.report import Report


def collect_evidence(model: nn.Module, sites: Sequence[Site]) -> dict[str, Any]:
    """Read-only, JSON-ready summary of the weights feeding each site."""
    return {}


def diagnose(report: Report) -> list[Finding]:
    """Findings for ``report``, most severe first."""
    return []
