"""The HTML report: self-contained, every number from the report, scales to big models.

The browser checks (scripts run, charts drawn, no fetches) are in test_html_browser.py.
"""

from __future__ import annotations

import base64
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from deep_models import deep_mlp, resnet50_like
from torch import nn

import deadrelu
from deadrelu.cli import main
from deadrelu.html import check_page, report_fragment, report_page, trend_page
from deadrelu.html.svg import STATE_CODE

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]
DIGITS = str(SM / "data" / "digits_test.npy")

pytestmark = pytest.mark.filterwarnings("ignore::deadrelu.InsufficientDataWarning")


def planted_net() -> nn.Module:
    """Two ReLU layers; units 0-4 of the first and 0-9 of the second never fire."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 3))
    with torch.no_grad():
        net[0].bias[:] = 2.0  # the other units fire on almost every input
        net[2].bias[:] = 2.0
        net[0].bias[:5] = -1e3
        net[2].bias[:10] = -1e3
    return net


@pytest.fixture(scope="module")
def report():
    return deadrelu.scan(planted_net(), torch.randn(300, 6), model_name="planted")


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def elements(page: str, tag: str) -> list[dict[str, str | None]]:
    parser = _Elements()
    parser.feed(page)
    return [attrs for t, attrs in parser.tags if t == tag]


def assert_self_contained(page: str) -> None:
    """No external reference of any kind, and a policy that forbids fetching one."""
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src")):
        assert not [a for a in elements(page, tag) if a.get(attr)], (tag, attr)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name, not a fetch
    assert "@import" not in page and "url(" not in page


def unit_views(page: str) -> dict[str, tuple[np.ndarray, str]]:
    """aria-label layer name → (rate bytes, state chars) of every unit canvas."""
    out = {}
    for attrs in elements(page, "canvas"):
        label = str(attrs["aria-label"])
        name = re.search(r"units of (.+?) in unit order", label).group(1)
        rates = np.frombuffer(base64.b64decode(str(attrs["data-rates"])), dtype=np.uint8)
        out[name] = (rates, str(attrs["data-states"]))
    return out


def test_report_page_is_self_contained_and_carries_the_planted_units(report):
    page = report_page(report)
    assert_self_contained(page)
    views = unit_views(page)
    assert set(views) == {"0", "2"} or set(views) == {s.info.name for s in report.sites}
    for site in report.sites:
        name = site.info.name
        rates, states = views[name]
        v = report.verdicts[name]
        assert len(rates) == len(states) == site.info.units
        # a byte of 0 means "never fired", exactly the dead units
        assert list(np.flatnonzero(rates == 0)) == report.units_in_state(name, "dead")
        assert [i for i, c in enumerate(states) if c == STATE_CODE["dead"]] == \
            report.units_in_state(name, "dead")
        # firing units keep a non-zero byte and round to their rate within 1/254
        alive = v.fire_rate > 0
        assert (rates[alive] >= 1).all()
        assert np.abs((rates[alive] - 1) / 254 - v.fire_rate[alive]).max() <= 0.5 / 254 + 1e-9
    first, second = (s.info.name for s in report.sites)
    assert report.units_in_state(first, "dead") == list(range(5))
    assert report.units_in_state(second, "dead") == list(range(10))
    # the overview's text alternative names the dead share of each layer
    assert f"Layers with dead units: {first} 25%; {second} 25%." in page
    assert "2 of 2 layers have dead units: 15 of 60 units" in page
    for f in report.findings:
        assert f.code in page
    assert "95% bound" in page and "300 samples" in page


def test_histogram_counts_every_unit(report):
    page = report_page(report)
    for site in report.sites:
        desc = re.search(rf"Units of {re.escape(site.info.name)} per fire-rate bin of 5%: ([^<]*)",
                         page).group(1)
        counts = [int(part.rsplit(": ", 1)[1]) for part in desc.split(", ")]
        assert sum(counts) == site.info.units


def test_layer_table_rows_sort_keys_match_the_report(report):
    page = report_page(report)
    table = page[page.index("<h2 id='layers'>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert len(rows) == len(report.sites)
    for row, rec in zip(rows, report.layer_records(), strict=True):
        keys = [float(k) for k in re.findall(r"data-v='([^']+)'", row)]
        assert keys[:7] == [rec["order"], rec["units"], rec["dead"], rec["rare"], rec["saturated"],
                            rec["always_on"], rec["healthy"]]


def test_repr_is_one_short_line(report):
    text = repr(report)
    assert "\n" not in text and len(text) < 200 and "tensor" not in text
    assert text == "<Report planted: 300 samples, 2 sites, 15 of 60 units dead>"


def test_repr_html_is_compact_and_scriptless(report):
    frag = report._repr_html_()
    assert frag == report_fragment(report)
    assert "<script" not in frag and "<canvas" not in frag
    assert "chart overview" in frag and "Findings" in frag
    assert "15 of 60 units" in frag
    # every style rule is scoped so the notebook around it is untouched
    css = re.search(r"<style>(.*?)</style>", frag, re.S).group(1)
    selectors = [s.strip() for s in re.findall(r"([^{}]+)\{", css)]
    assert selectors and all(all(p.strip().startswith(".deadrelu") for p in s.split(","))
                             for s in selectors), selectors


def test_resnet50_size_page_is_under_a_megabyte():
    torch.manual_seed(0)
    model = resnet50_like()
    report = deadrelu.scan(model, torch.randn(2, 3, 32, 32))
    assert len(report.sites) == 49
    assert sum(s.info.units for s in report.sites) == 22_720
    page = report_page(report)
    assert_self_contained(page)
    assert len(page.encode()) < 1_000_000
    views = unit_views(page)
    assert len(views) == 49
    # the widest layers (2048 channels) wrap into rows instead of 2048 SVG elements
    widest = [a for a in elements(page, "canvas") if len(base64.b64decode(str(a["data-rates"]))) == 2048]
    assert widest and all(a["data-cols"] == "880" and a["height"] == str(3 * 40) for a in widest)


def test_a_hundred_and_twenty_sites():
    torch.manual_seed(0)
    report = deadrelu.scan(deep_mlp(120), torch.randn(200, 32))
    page = report_page(report)
    assert_self_contained(page)
    assert len(report.sites) == 120
    assert len(unit_views(page)) == 120
    assert page.count("<details class='layer'") == 120
    # one bar row per layer in the overview chart, in forward order
    overview = re.search(r"<svg class=\"chart overview\".*?</svg>", page, re.S).group(0)
    labels = re.findall(r"text-anchor=\"end\" font-size=\"11\">([^<]+)</text>", overview)
    assert labels == [s.info.name for s in report.sites]
    assert len(page.encode()) < 1_000_000


def test_evidence_lists_are_cut_on_the_page_only():
    from deadrelu.html.page import EVIDENCE_ITEMS, _brief

    evidence = {"unit_indices": list(range(100)), "share": 0.123456789, "inner": {"x": [1, 2]}}
    brief = _brief(evidence)
    assert brief["unit_indices"] == [*range(EVIDENCE_ITEMS), f"... {100 - EVIDENCE_ITEMS} more"]
    assert brief["share"] == 0.1235 and brief["inner"] == {"x": [1, 2]}
    assert evidence["unit_indices"] == list(range(100))  # the report's own evidence is untouched


def test_trend_and_check_pages(tmp_path):
    from deadrelu.ci import CheckRun
    from deadrelu.gates import Gates, evaluate
    from deadrelu.track_checkpoints import track

    net = planted_net()
    paths = []
    for step, dead in ((100, 0), (200, 12)):
        with torch.no_grad():
            net[2].bias[:] = 2.0
            net[2].bias[:dead] = -1e3
        path = tmp_path / f"step_{step}.pt"
        torch.save(net.state_dict(), path)
        paths.append(path)
    trend = track(planted_net(), tmp_path, torch.randn(300, 6))
    page = trend_page(trend, str(tmp_path))
    assert_self_contained(page)
    assert "first jump (step 200)" in page
    assert "▲ 30.0" in page  # 12 of 40 units of the second layer, marked as the jump
    assert "Latest checkpoint (step 200)" in page
    report = trend.reports[-1]
    run = CheckRun(evaluate(report, Gates(max_dead=0.05)), report, "model.pt")
    page = check_page(run)
    assert_self_contained(page)
    assert "FAIL" in page and run.headline() in page


@pytest.mark.skipif(not (SM / "mlp_high_lr.pt").exists(), reason="sample models not built")
def test_cli_writes_html_for_scan_check_and_track(tmp_path, capsys):
    def run(*args: object) -> int:
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    out = tmp_path / "report.html"
    assert run("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DIGITS, "--format", "html",
               "-o", out, "-q") == 0
    assert capsys.readouterr().out == ""
    page = out.read_text()
    assert_self_contained(page)
    assert "DigitsMLP" in page and "238 of 384 units" in page

    assert run("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DIGITS, "--format", "html") == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")

    out = tmp_path / "check.html"
    assert run("check", SM / "series" / "step_400.pt", *MLP, "--data", DIGITS, "--max-dead", "20%",
               "--format", "html", "-o", out, "-q") == 1
    assert "gate failed" in out.read_text() or "gates failed" in out.read_text()

    out = tmp_path / "trend.html"
    assert run("track", SM / "series", *MLP, "--data", DIGITS, "--format", "html", "-o", out,
               "-q") == 0
    page = out.read_text()
    assert_self_contained(page)
    assert "first jump (step 400)" in page
    capsys.readouterr()

    # an output path that is an input is refused before anything runs
    assert run("track", SM / "series", *MLP, "--data", DIGITS, "--format", "html",
               "-o", SM / "series" / "step_100.pt") == 2
    assert "error:" in capsys.readouterr().err


def test_plots_return_figures():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    net = planted_net()
    with deadrelu.Monitor(net, every=1) as monitor:
        for _ in range(2):
            net(torch.randn(64, 6))
            monitor.report()
    fig = monitor.plot()
    assert isinstance(fig, Figure)
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    names = [s for s in monitor.history["layer"].unique()]
    assert set(lines) == {*names, "(model)"}
    # 5 of 20 and 10 of 40 units dead: 25% per layer, 25% overall
    for line in lines.values():
        assert list(line.get_ydata()) == pytest.approx([25.0, 25.0])


def test_monitor_plot_without_history_says_what_to_do():
    from deadrelu.errors import ConfigError

    monitor = deadrelu.Monitor(planted_net())
    with pytest.raises(ConfigError, match="no history"):
        monitor.plot()


def test_progress_true_is_silent_outside_a_terminal_or_notebook(capsys, report):
    again = deadrelu.scan(planted_net(), torch.randn(300, 6), model_name="planted", progress=True)
    assert repr(again) == repr(report)
    assert capsys.readouterr().err == ""


def test_notebook_progress_html():
    from deadrelu.progress import _notebook_html

    assert "<progress value='50' max='200'" in _notebook_html(50, 200, 1.0, False)
    assert "scanned 200 of 200 samples" in _notebook_html(200, 200, 1.0, True)
    assert "<progress style" in _notebook_html(7, None, 0.1, False)  # unknown total


def test_html_module_needs_no_optional_dependency(monkeypatch, report):
    # HTML is built from the standard library and numpy: no extra to install
    for name in ("matplotlib", "jinja2", "IPython"):
        monkeypatch.setitem(sys.modules, name, None)
    assert report_page(report).startswith("<!DOCTYPE html>")
