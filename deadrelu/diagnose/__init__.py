"""Diagnosis: turn statistics and read-only weight evidence into findings with causes and fixes.

Pure: nothing in this package touches a model. What it reads is a
:class:`~deadrelu.diagnose.subject.Subject` (a report's counters, verdicts,
thresholds, weight evidence and a few facts of the run); a report builds one
(``deadrelu.report.diagnosed``), so the dependency runs report → diagnose only.
:func:`diagnose` runs the rules of :data:`RULES` over it (:mod:`.engine`) after
:class:`~deadrelu.diagnose.context.Context` has computed, once, what several
rules share (per-unit causes, model-wide patterns).

Rules live in :mod:`.rules`, one function each, documented next to their code;
``deadrelu rules`` prints that documentation and ``docs/rules.md`` is generated
from it (``python -m deadrelu.diagnose.docs``).
"""

from __future__ import annotations

from deadrelu.diagnose.engine import diagnose
from deadrelu.diagnose.registry import RULES, Rule
from deadrelu.diagnose.selection import Selection
from deadrelu.diagnose.subject import Subject

__all__ = ["RULES", "Rule", "Selection", "Subject", "diagnose"]
