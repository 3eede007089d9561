"""The terminal report (deadrelu.render) and the text exports (deadrelu.export).

Golden files under tests/golden/ hold the exact text of a report of a small model
with planted states, rendered on a fixed 100-column console without colour.
Regenerate them after an intended change with::

    DEADRELU_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

import deadrelu
from deadrelu import export, render
from deadrelu.findings import Finding, Severity
from deadrelu.report import Report
from deadrelu.wording import percent

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("DEADRELU_UPDATE_GOLDEN") == "1"


class Planted(nn.Module):
    """Two ReLU layers and a sigmoid head with hand-set weights planting each unit state.

    Inputs are in [0, 1]^4 (see :func:`_data`). act1 (8 units): 0-2 dead (bias -100),
    3 rare (fires on exactly one sample), 4 always on (bias +100), 5-7 ordinary.
    act2 (6 units): 0-1 dead, 2-5 ordinary. out (3 units, sigmoid): 0 saturated
    (bias +100), 1-2 ordinary.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act1 = nn.Linear(4, 8), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(8, 6), nn.ReLU()
        self.fc3, self.out = nn.Linear(6, 3), nn.Sigmoid()
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([
                [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],  # dead
                [1, 0, 0, 0],  # rare: x0 > 0.95 on one sample only
                [0, 0, 0, 0],  # always on
                [1, 1, 0, 0], [0, 0, 1, -1], [-1, 0, 0, 1],
            ], dtype=torch.float32))
            self.fc1.bias.copy_(torch.tensor([-100, -100, -100, -0.95, 100, -0.5, 0, 0.2]))
            w2 = torch.zeros(6, 8)
            w2[2, 5] = 1
            w2[3, 6] = 1
            w2[4, 7], w2[4, 6] = 1, -1
            w2[5, 5], w2[5, 7] = 1, -1
            self.fc2.weight.copy_(w2)
            self.fc2.bias.copy_(torch.tensor([-100, -100, 0, -0.1, 0, 0.05]))
            w3 = torch.zeros(3, 6)
            w3[1, 2], w3[1, 3] = 1, -1
            w3[2, 4], w3[2, 5] = 1, 1
            self.fc3.weight.copy_(w3)
            self.fc3.bias.copy_(torch.tensor([100, 0, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc3(self.act2(self.fc2(self.act1(self.fc1(x))))))


def _data() -> torch.Tensor:
    x = torch.rand(200, 4, generator=torch.Generator().manual_seed(1))
    x[:, 0] *= 0.9
    x[17, 0] = 1.0  # the one sample on which act1's unit 3 fires
    return x


def planted_report() -> Report:
    report = deadrelu.scan(Planted(), _data(), batch_size=50, model_name="Planted (test fixture)",
                           data_name="200 random samples of shape (4,)")
    # Fixed time and no findings: the golden text must not depend on the clock or on
    # the diagnosis rules (they have their own tests).
    return replace(report, meta={**report.meta, "seconds": 0.0123}, findings=())


FINDINGS = (
    Finding("DR001", Severity.ERROR, "act1", "3 of 8 units (38%) never fire: their "
            "pre-activation is below zero for every input", "learning_rate",
            "lower the learning rate, or re-initialise the dead units (ReDo)"),
    Finding("DR010", Severity.INFO, None, "the sigmoid head saturates on unit 0",
            "output_activation", "check the scale of the head's inputs"),
)


@pytest.fixture(scope="module")
def report() -> Report:
    return planted_report()


def _render(report: Report, width: int = 100) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(report)
    # Trailing padding is invisible and editors strip it; compare without it.
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with DEADRELU_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


# -- the fixture really plants what it says ------------------------------------------------


def test_planted_states(report: Report) -> None:
    rows = {r["layer"]: r for r in report.layer_records()}
    assert [r["layer"] for r in report.layer_records()] == ["act1", "act2", "out"]
    assert rows["act1"]["dead"] == 3 and rows["act1"]["rare"] == 1
    assert rows["act1"]["always_on"] >= 1
    assert rows["act2"]["dead"] == 2
    assert rows["out"]["saturated"] == 1 and rows["out"]["dead"] == 0


# -- golden text ---------------------------------------------------------------------------


def test_table_golden(report: Report) -> None:
    _golden("report_table.txt", _render(report))


def test_table_with_findings_and_partial_golden(report: Report) -> None:
    partial = replace(report, findings=FINDINGS, meta={**report.meta, "partial": True,
                                                       "notes": ["a loader note"]})
    text = _render(partial)
    assert "PARTIAL" in text and "DR001" in text and "fix:" in text
    _golden("report_findings_partial.txt", text)


def test_markdown_golden(report: Report) -> None:
    _golden("report.md", export.to_markdown(replace(report, findings=FINDINGS)))


def test_csv_golden(report: Report) -> None:
    _golden("report_layers.csv", export.to_csv(report))


# -- content -------------------------------------------------------------------------------


def test_table_content(report: Report) -> None:
    text = _render(report)
    lines = text.splitlines()
    table = [line for line in lines if line.strip().startswith(("act1", "act2", "out"))]
    assert [line.split()[0] for line in table] == ["act1", "act2", "out"]  # forward order
    assert "38% dead" in table[0] and "33% dead" in table[1] and "33% saturated" in table[2]
    assert "Planted (test fixture)" in text and "0.01 s" in text and "200" in text
    assert "no problems found" in text
    assert lines[-1].startswith("2 of 3 layers have dead units: 5 of 17 units (29.4%)")
    assert "neurons (Linear layers)" in text and "(95% confidence)" in text  # the legend


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_width_robust(report: Report, width: int) -> None:
    text = _render(replace(report, findings=FINDINGS), width)
    assert all(len(line) <= width for line in text.splitlines())
    assert "act1" in text and "DR001" in text


def test_narrow_terminal_drops_columns_not_verdicts(report: Report) -> None:
    narrow = _render(report, 60)
    assert "38% dead" in narrow and "33% saturated" in narrow  # never cut off
    assert "0% → 100%" not in narrow and "fire rate" not in narrow  # histogram and its key dropped
    narrowest = _render(report, 44)
    assert "38% dead" in narrowest and "on/sat" not in narrowest
    assert "0% → 100%" in _render(report, 100)


def test_no_sites_partial() -> None:
    empty = Report((), meta={"model": "m", "data": "d", "partial": True, "seconds": 0.0})
    text = _render(empty)
    assert "PARTIAL" in text and "no activation sites" in text


def test_summary_no_dead() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    r = deadrelu.scan(model, torch.randn(150, 3))
    assert render.summary_line(r).startswith("no dead units: all 4 units in 1 layers")
    assert "–" in _render(r)  # dead/rare do not apply to tanh


# -- helpers -------------------------------------------------------------------------------


def test_histogram_bins() -> None:
    counts = render.histogram(np.array([0.0, 0.0, 0.05, 0.1, 0.55, 0.999, 1.0]))
    assert counts == [3, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert sum(counts) == 7


def test_sparkline() -> None:
    assert render.sparkline([8, 0, 1, 4]) == "█·▁▄"
    assert render.sparkline([0, 0]) == "··"
    assert render.sparkline([100, 1]) == "█▁"  # a single unit still shows


@pytest.mark.parametrize(("share", "places", "text"), [
    (0.0, None, "0%"), (0.004, None, "0.4%"), (0.0083, None, "0.83%"), (0.5, None, "50%"),
    (0.996, None, "99.6%"), (0.9996, None, "99.96%"), (1.0, None, "100%"), (0.123, None, "12%"),
    (0.0, 1, "0.0%"), (0.123, 1, "12.3%"), (0.0004, 1, "0.04%"), (0.99996, 1, "99.996%"),
    (1.0, 1, "100.0%"),
])
def test_percent(share: float, places: int | None, text: str) -> None:
    # one formatter for messages, tables and gates: a non-zero share never reads 0%,
    # a partial one never 100%
    assert percent(share, places) == text


def test_verdict() -> None:
    base = {"units": 10, "dead": 0, "rare": 0, "always_on": 0, "saturated": 0, "nonfinite": 0}
    assert render.verdict(base) == ("healthy", "green")
    assert render.verdict({**base, "dead": 6}) == ("60% dead", "bold red")
    assert render.verdict({**base, "dead": 1, "rare": 5})[0] == "10% dead, 50% rare"
    assert render.verdict({**base, "dead": 5, "rare": 0, "always_on": 0})[1] == "bold red"
    assert render.verdict({**base, "saturated": 3})[0] == "30% saturated"
    assert render.verdict({**base, "nonfinite": 2, "dead": 1})[0].startswith("2 NaN/Inf")


# -- exports -------------------------------------------------------------------------------


def test_json_round_trip(report: Report) -> None:
    text = export.to_json(replace(report, findings=FINDINGS))
    data = json.loads(text)
    assert data == json.loads(json.dumps(replace(report, findings=FINDINGS).to_dict()))
    back = Report.from_dict(data)
    assert back.layer_records() == report.layer_records()
    assert [f.code for f in back.findings] == ["DR001", "DR010"]


def test_csv_matches_layer_records(report: Report) -> None:
    rows = list(csv.DictReader(io.StringIO(export.to_csv(report))))
    assert [r["layer"] for r in rows] == ["act1", "act2", "out"]
    assert [int(r["dead"]) for r in rows] == [3, 2, 0]
    assert list(rows[0]) == list(report.layers.columns)


def test_markdown_content(report: Report) -> None:
    md = export.to_markdown(replace(report, findings=FINDINGS))
    assert md.startswith("# deadrelu report")
    assert "| `act1` | relu | 8 | 3 | 1 |" in md
    assert "**DR001** (error) in `act1`" in md and "*Fix:* lower the learning rate" in md
    assert "**Summary:** 2 of 3 layers have dead units" in md
    partial = export.to_markdown(replace(report, meta={**report.meta, "partial": True}))
    assert "**PARTIAL:**" in partial


# -- long layer names (transformers) at 80 columns -------------------------------------------


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(4, 4)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class LongNames(nn.Module):
    """Sites named like a Hugging Face encoder's: ``encoder.layer.N.intermediate.
    intermediate_act_fn`` (48-50 characters), ``blocks`` of them, and one dead ReLU unit."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList()
        for _ in range(blocks):
            block = nn.Module()
            block.intermediate = _Block()
            self.encoder.layer.append(block)
        self.head = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        with torch.no_grad():
            self.head[0].bias[0] = -100.0

    def forward(self, x):
        for block in self.encoder.layer:
            x = block.intermediate(x)
        return self.head(x)


def _long_names_report(blocks: int) -> Report:
    torch.manual_seed(0)
    report = deadrelu.scan(LongNames(blocks).eval(), torch.rand(400, 4), batch_size=100)
    meta = {**report.meta, "seconds": 0.5}  # the golden text must not depend on the clock
    return replace(report, meta=meta, findings=())


def _render_layers(report: Report, width: int) -> str:
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(render.render_layers(report))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def test_long_layer_names_golden_at_80_columns() -> None:
    _golden("layers_long_names_80.txt", _render_layers(_long_names_report(3), 80))


def test_long_layer_names_stay_whole_for_hundreds_of_sites() -> None:
    report = _long_names_report(150)
    names = [s.info.name for s in report.sites]
    assert len(names) == 151 and max(map(len, names)) >= 50
    for width in (80, 60, 50):
        lines = _render_layers(report, width).splitlines()
        assert all(len(line) <= width for line in lines)
        for name in names:  # every name is one whole line of its own
            assert name in lines, (width, name)
    # short names keep the one-row-per-layer table
    short = _render(deadrelu.scan(Planted(), _data(), batch_size=16), width=80)
    assert "act1  " in short and "\nact1\n" not in short
