"""CI output formats: JUnit parsed back, SARIF keys, GitHub annotations, Markdown, JSON, table."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.ci import CheckFormat, CheckRun, render
from deadrelu.ci.github import (
    annotation,
    escape_data,
    escape_property,
    render_annotations,
    write_step_summary,
)
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


#: the lines of ``self.enc = nn.Sequential(...)`` and ``self.dec = ...`` in Planted.__init__
ENC_LINE, DEC_LINE = (next(i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                           if line.strip().startswith(f"self.{name} = nn.Sequential("))
                      for name in ("enc", "dec"))


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
    # a finding points at the line of the user's code that creates its activation (here
    # the nn.Sequential holding dec.1); gates point at the model file
    assert notice.startswith(f"::notice file=tests/test_ci_formats.py,line={DEC_LINE},"
                             "title=deadrelu DR010 (dec.1)::")
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
        physical = loc["physicalLocation"]
        if result["ruleId"].startswith("DR"):  # findings: the line that creates the activation
            line = ENC_LINE if "enc.1" in str(loc.get("logicalLocations")) else DEC_LINE
            assert physical["artifactLocation"]["uri"] == "tests/test_ci_formats.py"
            assert physical["region"]["startLine"] == line
        else:  # gates: the model file
            assert physical["artifactLocation"]["uri"] == "models/net,v2.pt"
            assert physical["region"]["startLine"] == 1
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


# -- what real consumers accept ---------------------------------------------------------------


def test_the_schema_validators_catch_what_consumers_reject():
    """The vendored schemas are live: an unencoded URI and testsuites@skipped are errors."""
    import schemas

    log = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{
        "message": {"text": "m"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "my model.pt"}}}]}]}]}
    with pytest.raises(AssertionError, match="uri-reference"):
        schemas.validate_sarif(json.dumps(log))
    with pytest.raises(AssertionError, match="skipped"):
        schemas.validate_junit('<testsuites skipped="0"><testsuite name="s" tests="0" '
                               'failures="0" errors="0"/></testsuites>')


@pytest.mark.parametrize(("path", "uri"), [
    ("my models/net v2.pt", "my%20models/net%20v2.pt"),
    ("models/100%/ü.pt", "models/100%25/%C3%BC.pt"),
    ("a:b.pt", "a%3Ab.pt"),
    ("/srv/my models/net.pt", "file:///srv/my%20models/net.pt"),
])
def test_sarif_uris_are_percent_encoded(passing_run, path, uri):
    # no source line known for the layer: the finding points at the model file
    evidence = {**passing_run.report.evidence, "sites": {}}
    report = replace(passing_run.report, findings=(FINDING,), evidence=evidence)
    log = json.loads(render("sarif", CheckRun(passing_run.outcome, report, path)))  # validated
    (result,) = log["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == uri


def _sarif_levels(run: CheckRun) -> dict[tuple[str, str | None], str]:
    results = json.loads(render("sarif", run))["runs"][0]["results"]
    return {(r["ruleId"], r["properties"]["layer"]): r["level"] for r in results}


def _github_levels(run: CheckRun) -> dict[tuple[str, str | None], str]:
    levels = {}
    for line in render("github", run).splitlines():
        if not line.startswith("::"):
            continue
        kind = line[2:].split(" ", 1)[0].split("::", 1)[0]
        title = line.split("title=", 1)[1].split("::", 1)[0] if "title=" in line else ""
        parts = title.split(" ", 2)  # "deadrelu DR001 (enc.1)"
        if len(parts) >= 2 and parts[1].startswith("DR"):
            layer = parts[2].strip("()") if len(parts) == 3 else None
            levels[(parts[1], layer)] = {"notice": "note"}.get(kind, kind)
    return levels


def test_a_passing_check_has_no_error_in_sarif_or_annotations(passing_run):
    """An error-severity finding that no gate fails on is a warning in both formats."""
    report = replace(passing_run.report, findings=(FINDING, NOTE_FINDING))
    run = CheckRun(evaluate(report, Gates(max_dead=0.5)), report, "model.pt")
    assert run.outcome.passed
    sarif, github = _sarif_levels(run), _github_levels(run)
    assert sarif == github == {("DR001", "enc.1"): "warning", ("DR010", "dec.1"): "note"}
    assert "::error" not in render("github", run)


def test_sarif_and_annotations_agree_when_a_finding_fails_the_check(failing_run):
    sarif = _sarif_levels(failing_run)
    assert sarif[("DR001", "enc.1")] == "error" and sarif[("DR010", "dec.1")] == "note"
    github = _github_levels(failing_run)
    # DR001 fails fail-on[error]: GitHub shows it inside that gate's ::error annotation
    fail_on = next(ln for ln in render("github", failing_run).splitlines()
                   if "fail-on[error]" in ln)
    assert fail_on.startswith("::error ") and "DR001" in fail_on
    assert github == {("DR010", "dec.1"): "note"}


def test_annotations_keep_within_githubs_10_per_type_and_say_how_many_more(passing_run):
    warnings = tuple(Finding("DR004", Severity.WARNING, f"enc.{i}", f"warning {i}", "unknown", "x")
                     for i in range(14))
    infos = tuple(Finding("DR010", Severity.INFO, f"dec.{i}", f"info {i}", "unknown", "x")
                  for i in range(12))
    errors = tuple(Finding("DR001", Severity.ERROR, f"enc.{i}", f"error {i}", "unknown", "x")
                   for i in range(3))
    report = replace(passing_run.report, findings=infos + warnings + errors)
    run = CheckRun(evaluate(report, Gates(max_dead=0.5)), report, "model.pt")
    lines = render("github", run, ).splitlines()
    kinds = [ln[2:].split(" ", 1)[0] for ln in lines if ln.startswith("::")]
    assert kinds.count("warning") == 10 and kinds.count("notice") == 10
    # most important first: the three error-severity findings lead the warnings
    warning_lines = [ln for ln in lines if ln.startswith("::warning")]
    assert all("DR001" in ln for ln in warning_lines[:3])
    summary = lines[-2]
    assert summary.startswith("::notice title=deadrelu%3A more findings::")
    # 17 warnings (3 + 14) keep 10, 12 notices keep 9 (the summary is the tenth)
    assert "10 more annotations not shown (7 warnings, 3 notices)" in summary
    assert "--format markdown" in summary
    env_summary = render_annotations(run, {"GITHUB_STEP_SUMMARY": "/tmp/s.md"}).splitlines()[-2]
    assert "job's summary" in env_summary
    assert lines[-1] == run.headline()


def test_no_summary_annotation_when_everything_fits(failing_run):
    assert "more findings" not in render("github", failing_run)


def test_annotation_line_property():
    assert annotation("warning", "m", file="m.pt", line=12) == "::warning file=m.pt,line=12::m"
    assert annotation("warning", "m", line=12) == "::warning::m"  # a line needs a file


def test_check_json_has_a_schema_version_and_strict_numbers(failing_run):
    import math

    from deadrelu.ci import CHECK_SCHEMA_VERSION

    doc = json.loads(render("json", failing_run))  # validated against check.schema.json
    assert doc["schema_version"] == CHECK_SCHEMA_VERSION == 1 and doc["error"] is None
    nonfinite = replace(failing_run.report, findings=(replace(
        FINDING, evidence={"max": -math.inf, "ratio": math.nan, "ok": 1.5}),))
    text = render("json", CheckRun(failing_run.outcome, nonfinite, "m.pt"))
    assert "Infinity" not in text and "NaN" not in text
    evidence = json.loads(text)["findings"][0]["evidence"]
    assert evidence == {"max": None, "ratio": None, "ok": 1.5}


@pytest.mark.parametrize("fmt", [f.value for f in CheckFormat])
def test_every_format_can_say_the_check_could_not_run(fmt):
    from deadrelu.ci import render_error

    text = render_error(fmt, "my model.pt", "model file my model.pt does not exist — check it")
    assert "does not exist" in text  # validated by the autouse fixture for sarif/junit/json
    if fmt == "sarif":
        (inv,) = json.loads(text)["runs"][0]["invocations"]
        assert inv["executionSuccessful"] is False
    if fmt == "json":
        doc = json.loads(text)
        assert doc["passed"] is False and doc["error"].startswith("model file")


def test_source_locations_only_inside_the_working_directory(passing_run):
    from deadrelu.callsites import definition_site
    from deadrelu.ci.locations import source_location

    model = Planted()
    # a container's child has the container's line; a plain torch container has none
    assert definition_site(model, "dec.1").line == DEC_LINE
    assert definition_site(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "1") is None
    report = passing_run.report
    assert source_location(report, "dec.1") == ("tests/test_ci_formats.py", DEC_LINE)
    for where in ("/usr/lib/python3/site-packages/x.py:3", "../elsewhere.py:3", "x.py:?",
                  ".venv/lib/python3.11/site-packages/transformers/x.py:3"):
        sites = {"dec.1": {"defined_at": where}}
        assert source_location(replace(report, evidence={**report.evidence, "sites": sites}),
                               "dec.1") is None
