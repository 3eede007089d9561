"""Reports read back (``merge``, ``check --baseline``) are validated against the shipped schema.

Two halves: deadrelu's real outputs are valid under ``deadrelu/schemas/report.schema.json``
(checked with the ``jsonschema`` package, independent of deadrelu's own validator), and
hostile or corrupt reports give one line and exit 2 (never exit 3, never a RecursionError),
with deadrelu's validator and ``jsonschema`` agreeing on what is invalid.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.errors import ReportError
from deadrelu.report import Report
from deadrelu.schemas import load_schema

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]


def _validator() -> Any:
    schema = load_schema("report")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class _CNN(nn.Module):
    """Conv + BatchNorm + ReLU, a functional sigmoid, a Linear head: every evidence kind."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        h = self.act(self.bn(self.conv(x))).mean(dim=(2, 3))
        return torch.sigmoid(self.fc(h))


def _reports() -> dict[str, Report]:
    torch.manual_seed(0)
    cnn = _CNN().eval()
    x = torch.randn(40, 3, 8, 8)
    x[0, 0, 0, 0] = float("inf")  # non-finite input statistics are written as null
    scanned = deadrelu.scan(cnn, [x[:20], x[20:]])
    other = deadrelu.scan(cnn, [x[:10]])
    mlp = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2)).train()
    with deadrelu.Monitor(mlp, every=1, jump=None) as monitor:
        for _ in range(3):
            mlp(torch.randn(16, 5))
        trained = monitor.report()
    return {"scan": scanned, "merged": scanned.merge(other), "monitor": trained}


@pytest.fixture(scope="module")
def reports() -> dict[str, Report]:
    return _reports()


@pytest.mark.parametrize("kind", ["scan", "merged", "monitor"])
def test_real_reports_are_valid_under_the_shipped_schema(reports, kind):
    data = json.loads(reports[kind].to_json())
    errors = sorted(_validator().iter_errors(data), key=str)
    assert not errors, errors[0].message
    again = Report.from_dict(data)  # and deadrelu reads them back
    assert again.summary() == reports[kind].summary()


def test_cli_report_of_a_sample_model_is_valid(cli, tmp_path):
    out = tmp_path / "r.json"
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", SM / "data" / "digits_test.npy",
                 "--select", "DR0", "-f", "json", "-o", out, "-q")
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert "selection" in data["meta"]
    assert not list(_validator().iter_errors(data))


def test_null_input_statistics_read_back_and_merge(reports, tmp_path, cli):
    data = json.loads(reports["scan"].to_json())
    assert None in data["meta"]["input_stats"]["max"]
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        path.write_text(json.dumps(data))
    result = cli("merge", *paths, "-f", "json")
    assert result.code == 0, result.err


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting the field at ``path`` (dots and [i]) to ``value``."""

    def apply(data: dict) -> None:
        keys: list[Any] = []
        for part in path.replace("]", "").replace("[", ".").split("."):
            keys.append(int(part) if part.isdigit() else part)
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return apply


def _first_layer_evidence(data: dict) -> None:
    name = next(iter(data["evidence"]["layers"]))
    data["evidence"]["layers"][name]["bias"] = [1.0]  # one value for six units


def _deep_in_evidence(data: dict) -> None:
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    data["findings"][0]["evidence"]["deep"] = nested


# (mutation, words in the message, whether jsonschema must also reject it)
MUTATIONS = {
    "meta-5": (_set("meta", 5), "field meta is 5, expected an object", True),
    "meta-samples-string": (_set("meta.samples", "many"), "meta.samples", True),
    "meta-mode": (_set("meta.mode", "sideways"), "meta.mode", True),
    "layers-object": (_set("layers", {}), "field layers is an object, expected a list", True),
    "counter-string": (_set("layers[0].counters.active[2]", "x"), "layers[0].counters.active[2]",
                       True),
    "counter-negative": (_set("layers[0].counters.samples", -3), "below the minimum", True),
    "counter-list-negative": (_set("layers[0].counters.active[4]", -1),
                              "layers[0].counters.active[4] is -1, below the minimum", True),
    "counter-list-bool": (_set("layers[0].counters.nonfinite[1]", True),
                          "layers[0].counters.nonfinite[1] is true", True),
    "sum-list-string": (_set("layers[0].counters.sum[5]", "0.5"), "layers[0].counters.sum[5]",
                        True),
    "counter-missing": (lambda d: d["layers"][0]["counters"].pop("max"), "lacks the required "
                        "field 'max'", True),
    "site-units-bool": (_set("layers[0].site.units", True), "layers[0].site.units", True),
    "site-shape": (_set("layers[0].site.shape", "6"), "layers[0].site.shape", True),
    "finding-code": (_set("findings[0].code", "XX1"), "does not match", True),
    "summary-missing": (lambda d: d.pop("summary"), "lacks the required field 'summary'", True),
    "units-disagree": (_set("layers[0].site.units", 5), "the site has 5 units", False),
    "counter-length": (_set("layers[0].counters.active", [1, 2]), "has 2 values for 6 units",
                       False),
    "thresholds-string": (_set("thresholds.rare", "1%"), "thresholds.rare", True),
    "thresholds-range": (_set("thresholds.always_on", 0.2), "thresholds", False),
    "dormancy": (_set("thresholds.dormancy", 3), "thresholds.dormancy", True),
    "finding-severity": (_set("findings[0].severity", 5), "findings[0].severity", True),
    "finding-cause": (_set("findings[0].cause", "gremlins"), "findings[0].cause", True),
    "finding-evidence-list": (_set("findings[0].evidence", [1]), "findings[0].evidence", True),
    "evidence-length": (_first_layer_evidence, "values for 6 units", False),
    "evidence-sites": (_set("evidence.sites", []), "evidence.sites", True),
    "deep-in-evidence": (_deep_in_evidence, "nested deeper than", False),
    "version-true": (_set("schema_version", True), "schema version true", True),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_malformed_reports_one_line_exit_2_for_merge_and_baseline(reports, tmp_path, cli, case):
    mutate, words, schema_rejects = MUTATIONS[case]
    good = json.loads(reports["scan"].to_json())
    assert good["findings"], "the fixture needs a finding to corrupt"
    bad = copy.deepcopy(good)
    mutate(bad)
    if schema_rejects:  # the shipped schema says the same as deadrelu's validator
        assert list(_validator().iter_errors(bad))
    with pytest.raises(ReportError, match="report"):
        Report.from_dict(bad)
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    for args in (("merge", tmp_path / "good.json", tmp_path / "bad.json"),
                 ("check", SM / "mlp_high_lr.pt", *MLP, "--data", SM / "data" / "digits_test.npy",
                  "--baseline", tmp_path / "bad.json", "-q")):
        result = cli(*args)
        lines = result.err.strip().splitlines()
        assert result.code == 2, (case, args[0], result.err)
        assert len(lines) == 1 and lines[0].startswith("error:"), result.err
        assert words in lines[0] and "bug" not in lines[0], lines[0]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"schema_version": 1, "layers": ' + "[" * 50 + "]" * 50 + "}"])
def test_deeply_nested_json_is_one_line(tmp_path, cli, text):
    (tmp_path / "deep.json").write_text(text)
    (tmp_path / "deep2.json").write_text(text)
    for args in (("merge", tmp_path / "deep.json", tmp_path / "deep2.json"),
                 ("check", SM / "mlp_high_lr.pt", *MLP, "--data", SM / "data" / "digits_test.npy",
                  "--baseline", tmp_path / "deep.json", "-q")):
        result = cli(*args)
        assert result.code == 2, result.err
        assert len(result.err.strip().splitlines()) == 1 and "bug" not in result.err
        assert "Recursion" not in result.err and "nested" in result.err
