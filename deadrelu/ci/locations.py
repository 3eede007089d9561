"""Where in the user's code a finding points: the line that creates the activation module,
or the line that calls the activation function.

The evidence records it per site (``call_site`` for functional calls, ``defined_at`` for
modules, as ``path:line`` relative to the working directory). GitHub annotations and
SARIF results then point at that line of the repository, where a reviewer can change it,
rather than at the binary checkpoint. Paths outside the working directory, or inside an
installed package (a virtualenv kept in the repository), are not the repository's code,
so they are not used.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deadrelu.report import Report

__all__ = ["source_location"]


def source_location(report: Report, layer: str | None) -> tuple[str, int] | None:
    """``(path, line)`` of ``layer``'s activation in the user's code, or ``None``."""
    if not layer:
        return None
    sites = (report.evidence or {}).get("sites") or {}
    entry = sites.get(layer) or {}
    where = entry.get("call_site") or entry.get("defined_at")
    if not isinstance(where, str) or ":" not in where:
        return None
    path, _, line = where.rpartition(":")
    if not line.isdigit() or not path or PurePath(path).is_absolute() or path.startswith(".."):
        return None
    if _INSTALLED & set(PurePath(path).parts):  # a library in a virtualenv inside the repo
        return None
    return path, int(line)


#: Folders that hold installed packages: code there is not the repository's.
_INSTALLED = {"site-packages", "dist-packages"}
