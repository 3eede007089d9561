"""How numbers are written in messages, tables and gate results: one place for each.

Pure and dependency-free, so the diagnosis, the renderers, the gates and the monitor
all say the same share the same way.
"""

from __future__ import annotations

import math

#: Name used for the whole model in trend tables (rows of per-layer values).
MODEL = "(model)"


def percent(share: float, places: int | None = None) -> str:
    """A share as a percentage: ``19%``, ``0.83%`` (short), or ``12.5%`` with ``places=1``.

    Short form (``places=None``): whole percents from 10% up, two significant digits
    below. Either way a non-zero share never reads ``0%`` and a share below 1 never
    reads ``100%``: digits are added until it does not (``99.96%``, ``0.04%``).
    """
    value = 100.0 * share
    if places is not None:
        text = f"{value:.{places}f}"
    elif value == 0 or value >= 10:
        text = f"{value:.0f}"
    else:
        text = f"{value:.2g}"
    digits = places or 0
    while digits < 6 and _misleading(text, value):
        digits += 1
        text = f"{value:.{digits}f}"
    return f"{text}%"


def _misleading(text: str, value: float) -> bool:
    shown = float(text)
    return (shown == 0 and value != 0) or (shown == 100 and value < 100)


def percent_beside(share: float, other: float) -> str:
    """``share`` as a percentage with enough digits to differ from ``percent(other)``."""
    for digits in range(2, 7):
        a, b = f"{100.0 * share:.{digits}g}%", f"{100.0 * other:.{digits}g}%"
        if a != b:
            return a
    return percent(share)


def num(x: float) -> str:
    """A number in three significant digits, signed with a true minus sign when negative."""
    if math.isnan(x) or math.isinf(x):
        return f"{x}"
    text = f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.2e}"
    return text.replace("-", "−")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 unit``, ``3 units``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
