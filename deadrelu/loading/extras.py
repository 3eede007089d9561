"""Optional packages of the loaders (safetensors, pyarrow, Pillow...), imported where used.

A missing one is a one-line error naming the ``pip install 'deadrelu[extra]'`` command,
never an ``ImportError`` traceback, and ``import deadrelu.loading`` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from deadrelu.errors import DataError, LoadError


def require(module: str, extra: str, problem: str, *,
            error: type[LoadError] = DataError) -> ModuleType:
    """Import ``module`` from the ``extra`` of deadrelu's optional dependencies.

    Args:
        module: dotted module name (``"pyarrow.parquet"``).
        extra: the extra that installs it (``"parquet"``).
        problem: what cannot be done without it, for the error message.
        error: the error class to raise (``CheckpointError`` for model files).

    Raises:
        LoadError: ``error(problem, "pip install 'deadrelu[extra]'")`` when it is missing.
    """
    try:
        importlib.import_module(module.partition(".")[0])  # as `import a.b` does, even when
        return importlib.import_module(module)             # a.b was imported before
    except ImportError as exc:
        raise error(problem, f"pip install 'deadrelu[{extra}]'") from exc
