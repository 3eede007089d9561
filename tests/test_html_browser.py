"""The HTML pages in a real browser: headless Chromium over the DevTools protocol.

Checks what only a browser can: the page script runs without console errors, the
page makes no network request (only the file itself is loaded), every chart is
laid out with a non-zero size and has something drawn, and sorting works.
Skipped where Chromium is not installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from browser import MEASURE_CHARTS, Browser, find_chromium
from deep_models import deep_mlp
from test_html import planted_net

import deadrelu
from deadrelu.html import check_page, report_page, trend_page

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                "chromium); the HTML page is not tested in a browser"),
    pytest.mark.filterwarnings("ignore::deadrelu.InsufficientDataWarning"),
]


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        yield b


def open_page(browser: Browser, path: Path, page: str) -> list[dict]:
    path.write_text(page, encoding="utf-8")
    browser.console_errors.clear()
    browser.requests.clear()
    browser.open(path)
    charts = browser.evaluate(MEASURE_CHARTS)
    assert browser.console_errors == []
    assert browser.requests == [path.resolve().as_uri()]  # the file itself, nothing else
    assert charts
    for chart in charts:
        assert chart["width"] > 0 and chart["height"] > 0, chart
        assert chart["drawn"] > 0, chart
        assert chart["label"], chart  # every chart has its text alternative
    return charts


def test_report_page_renders(browser, tmp_path):
    report = deadrelu.scan(planted_net(), torch.randn(300, 6))
    charts = open_page(browser, tmp_path / "report.html", report_page(report))
    kinds = [c["cls"] for c in charts]
    assert kinds.count("chart overview") == 1
    assert kinds.count("chart hist") == kinds.count("units") == len(report.sites)
    # the unit view of the first layer paints a state band under each of its 20 units
    first = next(c for c in charts if c["cls"] == "units")
    assert first["width"] == 20 * 12


def test_tables_sort_when_a_heading_is_clicked(browser, tmp_path):
    report = deadrelu.scan(deep_mlp(30, dead_every=7), torch.randn(200, 32))
    open_page(browser, tmp_path / "sort.html", report_page(report))
    script = """
    (() => {
      const table = document.querySelector("table.layers");
      const col = [...table.tHead.rows[0].cells].findIndex(th => th.textContent.trim() === "dead");
      const keys = () => [...table.tBodies[0].rows].map(r => parseFloat(r.cells[col].dataset.v));
      const before = keys();
      table.tHead.rows[0].cells[col].querySelector("button").click();
      const up = keys();
      table.tHead.rows[0].cells[col].querySelector("button").click();
      return {before, up, down: keys(), sort: table.tHead.rows[0].cells[col].getAttribute("aria-sort")};
    })()
    """
    result = browser.evaluate(script)
    assert result["up"] == sorted(result["before"])
    assert result["down"] == sorted(result["before"], reverse=True)
    assert result["sort"] == "descending"
    # a layer link opens its folded details (layer 0 has no dead units, so it starts closed)
    opened = browser.evaluate("""
    (() => {
      const d = document.getElementById("layer-0");
      d.open = false;
      document.querySelector("table.layers a[href='#layer-0']").click();
      return new Promise(r => setTimeout(() => r(d.open), 100));
    })()
    """)
    assert opened is True
    assert browser.console_errors == []


def test_unit_view_hover_names_a_unit(browser, tmp_path):
    report = deadrelu.scan(planted_net(), torch.randn(300, 6))
    open_page(browser, tmp_path / "hover.html", report_page(report))
    text = browser.evaluate("""
    (() => {
      const c = document.querySelector("canvas.units");
      const r = c.getBoundingClientRect();
      c.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + 3, clientY: r.top + 5}));
      return document.getElementById(c.dataset.info).textContent;
    })()
    """)
    assert text == "unit 0: dead, fire rate 0% (never fired)"


def test_big_pages_render(browser, tmp_path):
    report = deadrelu.scan(deep_mlp(120), torch.randn(200, 32))
    charts = open_page(browser, tmp_path / "deep.html", report_page(report))
    assert sum(c["cls"] == "units" for c in charts) == 120
    # layers of thousands of units wrap into rows of 880 one-pixel bars
    report = deadrelu.scan(deep_mlp(2, 3000, dead_every=2), torch.randn(64, 3000))
    charts = open_page(browser, tmp_path / "wide.html", report_page(report))
    wide = [c for c in charts if c["cls"] == "units"]
    assert len(wide) == 2 and all(c["height"] == 4 * 40 for c in wide)
    # the state band alone paints 6 px under each of the 3,000 units
    assert all(c["drawn"] >= 3000 * 6 for c in wide)


def test_trend_and_check_pages_render(browser, tmp_path):
    from deadrelu.ci import CheckRun
    from deadrelu.gates import Gates, evaluate
    from deadrelu.track_checkpoints import track

    net = planted_net()
    folder = tmp_path / "run"
    folder.mkdir()
    for step, dead in ((100, 0), (200, 12), (300, 12)):
        with torch.no_grad():
            net[2].bias[:] = 2.0
            net[2].bias[:dead] = -1e3
        torch.save(net.state_dict(), folder / f"step_{step}.pt")
    trend = track(planted_net(), folder, torch.randn(300, 6))
    charts = open_page(browser, tmp_path / "trend.html", trend_page(trend, str(folder)))
    assert [c["cls"] for c in charts].count("chart trend") == 1
    report = trend.reports[-1]
    run = CheckRun(evaluate(report, Gates(max_dead=0.05)), report, "model.pt")
    open_page(browser, tmp_path / "check.html", check_page(run))


def test_the_checks_would_catch_an_error_and_a_fetch(browser, tmp_path):
    # negative control: the same recording sees a console error, an exception and a request
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://127.0.0.1:9/x.png'>"
                    "<script>console.error('boom'); undefined_function();</script></body></html>")
    browser.console_errors.clear()
    browser.requests.clear()
    browser.open(page)
    assert any("boom" in e for e in browser.console_errors)
    assert any("undefined_function" in e for e in browser.console_errors)
    assert "http://127.0.0.1:9/x.png" in browser.requests
    # under our page's Content-Security-Policy the image is refused, and both checks still see it
    from deadrelu.html.page import CSP

    page.write_text(f"<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
                    f"content=\"{CSP}\"></head><body><img src='http://127.0.0.1:9/y.png'></body></html>")
    browser.console_errors.clear()
    browser.requests.clear()
    browser.open(page)
    assert "http://127.0.0.1:9/y.png" in browser.requests  # attempted (and blocked): still caught
    assert any("Content Security Policy" in e for e in browser.console_errors)
