"""What a command shows on stderr besides its progress bar: Python warnings as one line each.

stdout carries only the result (the report, JSON, CSV...), so that it can be piped.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def warnings_to_stderr(quiet: bool = False) -> Iterator[None]:
    """Show Python warnings as one ``warning: ...`` line each on stderr (none when ``quiet``)."""

    def show(message: Any, category: Any, filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if not quiet:
            sys.stderr.write(f"warning: {' '.join(str(message).split())}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = show
        yield
