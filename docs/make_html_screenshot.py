"""Regenerate docs/images/html_report.png, the picture of the HTML report in the README.

Scans the sample model whose learning-rate spike killed units, writes the page
``deadrelu scan --format html`` writes, opens it in headless Chromium (the same
driver and flags as tests/test_html_browser.py) and saves a screenshot.

Run from the repository root: ``python docs/make_html_screenshot.py`` (needs chromium).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, find_chromium  # noqa: E402
from make_screenshot import sample_report  # noqa: E402  (this folder)

from deadrelu.html import report_page  # noqa: E402


def main() -> None:
    binary = find_chromium()
    if binary is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    report = sample_report()
    meta = dict(report.meta)
    meta["seconds"] = 0.5  # a stable picture: the time is not the point
    report = type(report)(report.sites, report.thresholds, meta, report.findings, report.evidence)
    out = ROOT / "docs/images/html_report.png"
    with tempfile.TemporaryDirectory() as tmp, Browser(binary, width=1000, height=2050) as browser:
        page = Path(tmp) / "report.html"
        page.write_text(report_page(report), encoding="utf-8")
        browser.open(page)
        # show the per-layer views next to the overview: fold the findings' evidence away
        browser.evaluate("document.querySelectorAll('table.findings details')"
                         ".forEach(d => d.open = false)")
        browser.screenshot(out)
        if browser.console_errors or browser.requests != [page.resolve().as_uri()]:
            raise SystemExit(f"page problems: {browser.console_errors} {browser.requests}")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
