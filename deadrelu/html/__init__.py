"""Self-contained HTML reports: one offline file with charts, and the notebook view.

:func:`report_page` (``deadrelu scan --format html``), :func:`check_page`
(``check``), :func:`trend_page` (``track``) return a whole document as a string;
:func:`report_fragment` is ``Report._repr_html_``. Standard library and numpy
only, so HTML needs no extra: how the page is built is in ``docs/html.md``.
"""

from __future__ import annotations

from deadrelu.html.page import (
    check_error_page,
    check_page,
    report_fragment,
    report_page,
    trend_page,
)

__all__ = ["check_error_page", "check_page", "report_fragment", "report_page", "trend_page"]
