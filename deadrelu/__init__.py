"""deadrelu: find dead, dormant and saturated units in trained PyTorch networks.

Public API::

    report = deadrelu.scan(model, data_loader)
    report.layers      # pandas DataFrame, one row per activation site
    report.units       # one row per unit
    report.findings    # diagnosed problems with causes and fixes

Names are imported lazily (PEP 562) so that ``deadrelu --help`` and other
torch-free paths do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → module that defines it
_EXPORTS = {
    "Collector": "deadrelu.collector",
    "DeadUnitsWarning": "deadrelu.monitor",
    "DeadReluError": "deadrelu.errors",
    "Finding": "deadrelu.findings",
    "InsufficientDataWarning": "deadrelu.scanning",
    "KeptUnits": "deadrelu.fix.prune",
    "Monitor": "deadrelu.monitor",
    "PruneResult": "deadrelu.fix.prune",
    "RecycleResult": "deadrelu.fix.recycle",
    "RemovedUnits": "deadrelu.fix.prune",
    "Report": "deadrelu.report",
    "Severity": "deadrelu.findings",
    "SwapResult": "deadrelu.fix.swap",
    "Thresholds": "deadrelu.analyzer",
    "UnitState": "deadrelu.analyzer",
    "load_pruned": "deadrelu.fix.persist",
    "merge_reports": "deadrelu.report",
    "prune": "deadrelu.fix.prune",
    "recycle": "deadrelu.fix.recycle",
    "scan": "deadrelu.scanning",
    "swap_activations": "deadrelu.fix.swap",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily
    from deadrelu.analyzer import Thresholds, UnitState  # noqa: F401
    from deadrelu.collector import Collector  # noqa: F401
    from deadrelu.errors import DeadReluError  # noqa: F401
    from deadrelu.findings import Finding, Severity  # noqa: F401
    from deadrelu.fix.persist import load_pruned  # noqa: F401
    from deadrelu.fix.prune import KeptUnits, PruneResult, RemovedUnits, prune  # noqa: F401
    from deadrelu.fix.recycle import RecycleResult, recycle  # noqa: F401
    from deadrelu.fix.swap import SwapResult, swap_activations  # noqa: F401
    from deadrelu.report import Report, merge_reports  # noqa: F401
    from deadrelu.scanning import InsufficientDataWarning, scan  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deadrelu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public names and the module's dunders; not the helpers this file imports
    # (annotations, importlib, Any, TYPE_CHECKING) nor submodules loaded so far.
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
