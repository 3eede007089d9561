"""Diagnosis: turn statistics and read-only weight evidence into findings with causes and fixes.

Two steps, split so that the analysis never needs the model:

* :func:`collect_evidence` (after a scan, reads the model): a JSON-ready summary of
  the weights feeding each activation site (:mod:`.evidence`).
* :func:`diagnose` (pure): runs the rules of :data:`RULES` over a report's
  statistics, thresholds, evidence and data statistics (:mod:`.engine`).

Rules live in :mod:`.rules`, one function each, documented next to their code;
``deadrelu rules`` prints that documentation and ``docs/rules.md`` is generated
from it (``python -m deadrelu.diagnose.docs``). This package imports torch only
inside :func:`collect_evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deadrelu.diagnose.engine import diagnose
from deadrelu.diagnose.registry import RULES, Rule
from deadrelu.diagnose.selection import Selection

if TYPE_CHECKING:
    from torch import nn

    from deadrelu.collector import Site

__all__ = ["RULES", "Rule", "Selection", "collect_evidence", "diagnose"]


def collect_evidence(model: nn.Module, sites: Sequence[Site]) -> dict[str, Any]:
    """Read-only, JSON-ready summary of the weights feeding each site (see :mod:`.evidence`)."""
    from deadrelu.diagnose.evidence import collect_evidence as collect

    return collect(model, sites)
