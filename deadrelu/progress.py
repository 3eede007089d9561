"""The scan's progress bar: rich on a terminal's stderr, an HTML bar in a Jupyter notebook.

Both are callbacks ``update(samples_done, total_or_None)`` for :func:`deadrelu.scan`.
The notebook bar is one ``<progress>`` element in a display that is updated in place
(IPython display handles), so it needs no widget library; updates are throttled to a
few per second because every update is a message to the front end.
"""

from __future__ import annotations

import contextlib
import html
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Update = Callable[[int, "int | None"], None]

#: Seconds between two notebook updates.
NOTEBOOK_INTERVAL = 0.2


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), false in a terminal or script."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


@contextlib.contextmanager
def progress_bar(*, total: int | None = None, enabled: bool = True) -> Iterator[Update | None]:
    """Yields an ``update(done, total)`` callback, or ``None`` where nothing can be shown.

    In a notebook: an HTML bar in the cell's output. On a terminal: a transient rich bar
    on stderr. Elsewhere (a pipe, a log file): ``None``, since a bar there is only noise.
    """
    if not enabled:
        yield None
    elif in_notebook():
        with _notebook_bar(total) as update:
            yield update
    else:
        with _terminal_bar(total) as update:
            yield update


def _notebook_html(done: int, total: int | None, seconds: float, finished: bool) -> str:
    bar = (f"<progress value='{done}' max='{total}' style='width:300px'></progress>"
           if total else ("<progress value='1' max='1' style='width:300px'></progress>" if finished
                          else "<progress style='width:300px'></progress>"))
    of = f" of {total:,}" if total else ""
    verb = "scanned" if finished else "scanning:"
    return (f"<div class='deadrelu-progress' style='font:13px system-ui,sans-serif'>{bar} "
            f"{html.escape(verb)} {done:,}{of} samples, {seconds:.1f} s</div>")


@contextlib.contextmanager
def _notebook_bar(total: int | None) -> Iterator[Update]:
    from IPython.display import HTML, display

    start = time.perf_counter()
    state: dict[str, Any] = {"done": 0, "total": total, "last": 0.0}
    handle = display(HTML(_notebook_html(0, total, 0.0, False)), display_id=True)

    def update(done: int, known_total: int | None) -> None:
        state["done"], state["total"] = done, known_total or state["total"]
        now = time.perf_counter()
        if now - state["last"] >= NOTEBOOK_INTERVAL:
            state["last"] = now
            handle.update(HTML(_notebook_html(done, state["total"], now - start, False)))

    try:
        yield update
    finally:
        handle.update(HTML(_notebook_html(state["done"], state["total"],
                                          time.perf_counter() - start, True)))


@contextlib.contextmanager
def _terminal_bar(total: int | None) -> Iterator[Update | None]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:
        yield None
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("scanning"), BarColumn(),
                          MofNCompleteColumn(), TextColumn("samples"), TimeElapsedColumn()]
    if total:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("scan", total=total)

        def update(done: int, known_total: int | None) -> None:
            bar.update(task, completed=done, total=known_total or total)

        yield update
