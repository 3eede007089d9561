"""Matplotlib figures of dead fraction against training step (``Trend.plot``, ``Monitor.plot``).

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), not
pyplot: nothing global is created, so a notebook shows the returned figure once and a
script never leaks open figures. matplotlib is the optional ``plot`` extra and is
imported here, when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deadrelu.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def dead_fraction_figure(table: pd.DataFrame, *, total: str | None, jump_steps: Sequence[int] = (),
                         title: str = "Dead fraction per layer") -> Figure:
    """One line per row of ``table`` (index: layer, columns: steps, values: dead fraction).

    Args:
        table: wide table of dead fractions, as :meth:`Trend.table`.
        total: the row that is the whole model, drawn black and dashed (``None``: no such row).
        jump_steps: steps to mark with a vertical line.
        title: the axes title.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401  (the package first: a cached submodule would hide its absence)
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("plotting needs matplotlib, which is not installed",
                          "pip install 'deadrelu[plot]'") from exc
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    steps = list(table.columns)
    for layer, row in table.iterrows():
        style: dict[str, Any] = (
            {"color": "black", "linestyle": "--", "linewidth": 2} if layer == total else {})
        ax.plot(steps, [v * 100 for v in row.to_numpy()], marker="o", label=str(layer), **style)
    for step in sorted(set(jump_steps)):
        ax.axvline(step, color="red", alpha=0.3, linestyle=":")
    ax.set_xlabel("step")
    ax.set_ylabel("dead units (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(table) <= 20:  # a legend of a hundred layers hides the plot
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    _show_in_notebook()
    return fig


def _show_in_notebook() -> None:
    """Make Jupyter draw a returned ``Figure`` as PNG even before pyplot was imported.

    IPython registers its figure formatter only when the inline backend starts (the
    first pyplot import); a figure returned earlier would show as ``<Figure ...>``.
    """
    from deadrelu.progress import in_notebook

    if not in_notebook():
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    shell = get_ipython()
    png = shell.display_formatter.formatters["image/png"]
    if Figure not in png.type_printers:
        select_figure_formats(shell, {"png"})
