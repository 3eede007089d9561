"""CI output formats: JUnit parsed back, SARIF keys, GitHub annotations, Markdown, JSON, table."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.ci import CheckFormat, CheckRun, render
from deadrelu.ci.github import annotation, escape_data, escape_property, write_step_summary
from deadrelu.findings import Finding, Severity
from deadrelu.gates import Gates, LayerLimit, evaluate


class Planted(nn.Module):
    """Sites ``enc.1`` (8 units) and ``dec.1`` (4); the listed units never fire."""

    def __init__(self, dead_enc=(), dead_dec=()) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
        with torch.no_grad():
            for layer, dead in ((self.enc[0], dead_enc), (self.dec[0], dead_dec)):
                layer.weight.zero_()
                layer.bias.fill_(1.0)
                layer.bias[list(dead)] = -1.0

    def forward(self, x):
        return self.dec(self.enc(x))


FINDING = Finding("DR001", Severity.ERROR, "enc.1", "half the units are dead", "learning_rate",
                  "lower the learning rate")
NOTE_FINDING = Finding("DR010", Severity.INFO, "dec.1", "units always on", "architecture",
                       "nothing to do")


@pytest.fixture(scope="module")
def failing_run() -> CheckRun:
    """max-dead fails, enc.1 fails its layer limit, dec.1 passes, fail-on error fails,
    and the baseline regression gates fail for enc.1."""
    x = torch.randn(128, 3)
    base = deadrelu.scan(Planted(dead_enc=[0]), x)
    report = deadrelu.scan(Planted(dead_enc=[0, 1, 2, 3], dead_dec=[0]), x)
    report = replace(report, findings=(FINDING, NOTE_FINDING))
    gates = Gates(max_dead=0.1, max_dead_layer=(LayerLimit("*", 0.3),), fail_on=("error",),
                  max_increase=0.02)
    outcome = evaluate(report, gates, base)
    return CheckRun(outcome, report, "models/net,v2.pt", "base.json")


@pytest.fixture(scope="module")
def passing_run() -> CheckRun:
    # Findings come from the diagnosis rules; these tests set them explicitly.
    report = replace(deadrelu.scan(Planted(), torch.randn(128, 3)), findings=())
    return CheckRun(evaluate(report, Gates(max_dead=0.0)), report, "model.pt")


def test_failing_run_has_the_expected_failures(failing_run):
    assert [r.name for r in failing_run.outcome.failures] == [
        "max-dead", "max-dead-layer[enc.1]", "fail-on[error]", "max-increase",
        "max-increase-layer[enc.1]", "max-increase-layer[dec.1]"]


# -- JUnit ----------------------------------------------------------------------------------


def test_junit_parses_back_with_one_case_per_gate_and_layer(failing_run):
    text = render("junit", failing_run)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    results = failing_run.outcome.results
    assert len(cases) == len(results) == int(suite.get("tests")) == int(root.get("tests"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == len(failing_run.outcome.failures) == int(suite.get("failures"))
    assert suite.get("errors") == "0"
    names = [(c.get("classname"), c.get("name")) for c in cases]
    assert names == [
        ("deadrelu.max-dead", "model"), ("deadrelu.max-dead-layer", "enc.1"),
        ("deadrelu.max-dead-layer", "dec.1"), ("deadrelu.fail-on", "error"),
        ("deadrelu.max-increase", "model"), ("deadrelu.max-increase-layer", "enc.1"),
        ("deadrelu.max-increase-layer", "dec.1")]
    failure = cases[1].find("failure")
    assert failure.get("type") == "max-dead-layer"
    assert failure.get("message").startswith("dead 50.0% > limit 30.0% (+20.0 pp) in layer enc.1")
    increase = cases[5].find("failure")
    assert "3 unit(s) dead now but not in the baseline: 1-3" in increase.text
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["model"] == "models/net,v2.pt" and props["units"] == "12"


def test_junit_escapes_markup_in_names():
    report = deadrelu.scan(Planted(dead_enc=[0]), torch.randn(128, 3))
    run = CheckRun(evaluate(report, Gates(max_dead=0.0)), report, 'a<b>&"c".pt')
    root = ET.fromstring(render("junit", run).encode())
    assert root.find("testsuite").get("name") == 'deadrelu check a<b>&"c".pt'


def test_junit_all_passing(passing_run):
    root = ET.fromstring(render("junit", passing_run).encode())
    assert root.get("failures") == "0" and root.get("tests") == "1"
    assert root.find("testsuite/testcase/failure") is None


# -- GitHub ---------------------------------------------------------------------------------


def test_github_escaping():
    assert escape_data("50% done\nnext\r") == "50%25 done%0Anext%0D"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    assert annotation("error", "x", title="t", file="f.pt") == "::error file=f.pt,title=t::x"
    assert annotation("notice", "x") == "::notice::x"


def test_github_annotations(failing_run):
    lines = render("github", failing_run).splitlines()
    errors = [ln for ln in lines if ln.startswith("::error ")]
    assert len(errors) == len(failing_run.outcome.failures)
    # the model path's comma is escaped in the property, the percent signs in the message
    assert errors[0] == ("::error file=models/net%2Cv2.pt,title=deadrelu max-dead::"
                         "dead 41.7%25 > limit 10.0%25 (+31.7 pp) in the whole model (5/12 units)")
    assert errors[1].startswith("::error file=models/net%2Cv2.pt,title=deadrelu "
                                "max-dead-layer[enc.1]::dead 50.0%25 > limit 30.0%25")
    fail_on = next(ln for ln in errors if "fail-on[error]" in ln)
    assert "DR001 [error] enc.1: half the units are dead" in fail_on
    assert "%0A" in fail_on  # details on further lines, escaped into one command
    # DR001 is reported by its failed gate, DR010 (info) as a notice of its own
    assert not any(ln.startswith("::warning") and "DR001" in ln for ln in lines)
    notice = next(ln for ln in lines if "DR010" in ln)
    assert notice.startswith("::notice file=models/net%2Cv2.pt,title=deadrelu DR010 (dec.1)::")
    assert lines[-1] == "deadrelu check: 6 of 7 gates failed"
    for line in lines:  # every command is one physical line
        assert "\n" not in line and "\r" not in line


def test_github_step_summary_is_appended(failing_run, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert write_step_summary(failing_run, {"GITHUB_STEP_SUMMARY": str(summary)}) == summary
    text = summary.read_text()
    assert text.startswith("earlier step\n### :x: deadrelu check: 6 of 7 gates failed")
    assert "| max-dead-layer | enc.1 | 50.0% | 30.0% | **FAIL** (+20.0 pp) |" in text
    assert write_step_summary(failing_run, {}) is None


# -- SARIF ----------------------------------------------------------------------------------


def test_sarif_required_keys_and_results(failing_run):
    log = json.loads(render("sarif", failing_run))
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "deadrelu" and driver["version"] == deadrelu.__version__
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    results = run["results"]
    for result in results:
        assert result["message"]["text"]
        assert result["level"] in ("error", "warning", "note")
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        (loc,) = result["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == "models/net,v2.pt"
        assert loc["physicalLocation"]["region"]["startLine"] == 1
        assert result["partialFingerprints"]
    by_rule = {(r["ruleId"], (r["locations"][0].get("logicalLocations") or [{}])[0].get("name"))
               : r for r in results}
    assert by_rule[("max-dead", None)]["level"] == "error"
    assert by_rule[("max-dead-layer", "enc.1")]["level"] == "error"
    assert ("max-dead-layer", "dec.1") not in by_rule  # passed gates are not results
    assert by_rule[("DR001", "enc.1")]["level"] == "error"  # matched a failed fail-on gate
    assert by_rule[("DR010", "dec.1")]["level"] == "note"
    assert "fail-on" not in rule_ids  # reported through the findings it matched


def test_sarif_passing_run_has_no_results(passing_run):
    log = json.loads(render("sarif", passing_run))
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is True


# -- JSON, Markdown, table ----------------------------------------------------------------------


def test_json(failing_run):
    doc = json.loads(render("json", failing_run))
    assert doc["passed"] is False and doc["failed"] == 6
    assert doc["model"] == "models/net,v2.pt" and doc["baseline"] == "base.json"
    assert doc["summary"]["units"] == 12 and doc["summary"]["dead"] == 5
    assert [f["code"] for f in doc["findings"]] == ["DR001", "DR010"]
    assert doc["results"][1]["name"] == "max-dead-layer[enc.1]"


def test_markdown(failing_run):
    text = render("markdown", failing_run)
    assert text.startswith("### :x: deadrelu check: 6 of 7 gates failed\n")
    assert "| Gate | Scope | Actual | Limit | Result |" in text
    assert "| max-dead-layer | dec.1 | 25.0% | 30.0% | PASS |" in text
    assert "| fail-on `error` | model | 1 | 0 | **FAIL** (+1) |" in text
    assert "- `max-increase-layer[enc.1]`: dead 50.0% vs baseline 12.5%" in text
    assert "<summary>2 finding(s)</summary>" in text


def test_table(failing_run, passing_run):
    text = render(CheckFormat.table, failing_run, width=100)
    lines = text.splitlines()
    assert lines[0] == "deadrelu check  models/net,v2.pt"
    assert lines[1] == "12 units in 2 layers, 5 dead (41.7%), 128 samples"
    header = next(ln for ln in lines if ln.startswith("Gate"))
    assert header.split() == ["Gate", "Scope", "Actual", "Limit", "Result", "Over", "by"]
    row = next(ln for ln in lines if ln.startswith("max-dead-layer") and "enc.1" in ln)
    assert row.split() == ["max-dead-layer", "enc.1", "50.0%", "30.0%", "FAIL", "+20.0", "pp"]
    assert ("  FAIL max-dead-layer[enc.1]: dead 50.0% > limit 30.0% (+20.0 pp) in layer enc.1 "
            "(4/8 units); limit from '*'") in lines
    assert lines[-1] == "deadrelu check: 6 of 7 gates failed"
    assert render("table", passing_run).splitlines()[-1] == "deadrelu check: the 1 gate passed"


def test_every_format_renders(failing_run):
    for fmt in CheckFormat:
        assert render(fmt, failing_run).strip()
