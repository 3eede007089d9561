"""What a diagnosis reads: the narrow input of :func:`deadrelu.diagnose.diagnose`.

The rules judge counters, verdicts, thresholds and read-only weight evidence, plus a
few facts about the run (the data's scale, which site makes the output, how the model
was trained, fresh-init dead counts, which rules to report). :class:`Subject` holds
exactly those, so this package never imports :mod:`deadrelu.report`: a report builds
its subject (``deadrelu.report.diagnosed``) and the dependency runs one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.analyzer import Thresholds, UnitVerdicts
    from deadrelu.collector import Site


@dataclass(frozen=True)
class Subject:
    """A report's facts that the rules read.

    Attributes:
        sites: activation sites in forward order (info and counters).
        verdicts: per-site rates and unit states, by site name.
        thresholds: the thresholds the verdicts use.
        samples: samples scanned.
        evidence: read-only weight evidence (``Report.evidence``).
        data: the data statistics (``input_stats``, ``output_stats`` as in ``Report.meta``).
        output: which site produced the model's output (``{"producer", "direct"}``), if known.
        recipe: how the model was trained (optimizer, learning rate...), if known.
        init: dead units of freshly initialized copies (``deadrelu.init_compare``), if scanned.
        selection: the rules to report (``Selection.to_dict()``), if the scan chose some.
    """

    sites: Sequence[Site]
    verdicts: Mapping[str, UnitVerdicts]
    thresholds: Thresholds
    samples: int
    evidence: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    output: Mapping[str, Any] | None = None
    recipe: Mapping[str, Any] | None = None
    init: Mapping[str, Any] | None = None
    selection: Mapping[str, Any] | None = None
