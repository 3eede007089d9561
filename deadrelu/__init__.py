"""deadrelu: find dead, dormant and saturated units in trained PyTorch networks.

Public API::

    report = deadrelu.scan(model, data_loader)
    report.layers      # pandas DataFrame, one row per activation site
    report.units       # one row per unit
    report.findings    # diagnosed problems with causes and fixes
"""

from __future__ import annotations

__version__ = "0.1.0"

from deadrelu.analyzer import Thresholds, UnitState
from deadrelu.collector import Collector
from deadrelu.errors import DeadReluError
from deadrelu.findings import Finding, Severity
from deadrelu.report import Report, merge_reports
from deadrelu.scan import InsufficientDataWarning, scan

__all__ = [
    "Collector",
    "DeadReluError",
    "Finding",
    "InsufficientDataWarning",
    "Report",
    "Severity",
    "Thresholds",
    "UnitState",
    "__version__",
    "merge_reports",
    "scan",
]
