"""The one exception family deadrelu raises for problems a user can fix.

Everything a user can cause (a bad argument, a checkpoint that does not load,
data that does not fit the model, a forward pass that raises) surfaces as a
:class:`DeadReluError`. The CLI catches exactly this type at its boundary and
prints ``str(error)`` as one line with exit code 2; anything else is a bug in
deadrelu and keeps its traceback.

Exception tree::

    DeadReluError
    ├── ConfigError        invalid argument, option or [tool.deadrelu] key
    ├── LoadError          a file that cannot be read as asked
    │   ├── CheckpointError    model file: missing, corrupt, unsafe, wrong keys
    │   └── DataError          data path: missing, empty, unreadable, wrong shape
    ├── ModelError         the model itself: no activation sites, forward raised
    └── ReportError        report JSON: bad schema, reports that cannot merge

Each message names the problem and, after " — ", what to do about it.
"""

from __future__ import annotations


class DeadReluError(Exception):
    """Base class: a problem the user can fix; its message says how."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class ConfigError(DeadReluError):
    """An argument, CLI option or configuration value is invalid."""


class LoadError(DeadReluError):
    """A file could not be loaded as requested."""


class CheckpointError(LoadError):
    """The model file is missing, corrupt, unsafe to unpickle or does not match."""


class DataError(LoadError):
    """The data path is missing, empty, unreadable or does not fit the model."""


class ModelError(DeadReluError):
    """The model cannot be scanned: no activation sites, or its forward raised."""


class ReportError(DeadReluError):
    """A report cannot be read, or reports cannot be merged."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeadReluError",
    "LoadError",
    "ModelError",
    "ReportError",
]
