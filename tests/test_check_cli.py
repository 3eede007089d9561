"""``deadrelu check`` end to end on the sample checkpoints: exit codes, gates, formats, config.

The sample series (``sample_models/series``) is one training run in which a
learning-rate spike after step 300 killed units: step 300 has 12.8% dead units
(net.1 3.9%, net.3 14.1%, net.5 20.3%), step 400 has 66.7% (90.6%, 69.5%, 39.8%).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
GOOD = SM / "series" / "step_300.pt"
BAD = SM / "series" / "step_400.pt"
LOAD = ["--arch", f"{SM / 'models.py'}:DigitsMLP", "--data", str(SM / "data" / "digits_test.npy")]

pytestmark = pytest.mark.skipif(not BAD.exists(), reason="sample models not built")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """``deadrelu scan --format json`` of the last good checkpoint (step 300)."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("baseline") / "baseline.json"
    done = subprocess.run([sys.executable, "-m", "deadrelu", "scan", str(GOOD), *LOAD,
                           "--format", "json", "--no-progress"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    path.write_text(done.stdout)
    return path


# -- exit codes -----------------------------------------------------------------------------


def test_exit_0_when_every_gate_passes(cli):
    code, out, err = cli("check", GOOD, *LOAD, "--max-dead", "20%", "--max-dead-layer", "net.*=25%")
    assert code == 0, err
    assert "deadrelu check: all 4 gates passed" in out
    assert "FAIL" not in out


def test_exit_1_names_the_gate_the_excess_and_the_place(cli):
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead", "20%", "--max-dead-layer", "net.*=50%")
    assert code == 1
    assert "FAIL max-dead: dead 66.7% > limit 20.0% (+46.7 pp) in the whole model (256/384 units)" in out
    assert ("FAIL max-dead-layer[net.1]: dead 90.6% > limit 50.0% (+40.6 pp) in layer net.1 "
            "(116/128 units); limit from 'net.*'") in out
    assert "FAIL max-dead-layer[net.3]" in out and "FAIL max-dead-layer[net.5]" not in out
    assert out.rstrip().endswith("deadrelu check: 3 of 4 gates failed")


def test_exit_zero_reports_failures_but_exits_0(cli):
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead", "20%", "--exit-zero")
    assert code == 0
    assert "deadrelu check: 1 of 1 gate failed" in out


def test_quiet_prints_the_verdict_only(cli):
    code, out, err = cli("check", BAD, *LOAD, "--max-dead", "20%", "-q")
    assert (code, out, err) == (1, "deadrelu check: 1 of 1 gate failed\n", "")


@pytest.mark.parametrize("args, message", [
    (["--max-dead", "20"], "--max-dead '20' is not a share between 0% and 100% — write 20% for 20 percent"),
    (["--max-dead-layer", "encoder.*=20%"], "max-dead-layer glob 'encoder.*' matches no layer of "
                                            "this model — layers are: net.1, net.3, net.5"),
    (["--fail-on", "DR-1"], "--fail-on 'DR-1' is neither a rule code"),
    (["--fail-on", "XY9"], "--fail-on 'XY9' matches no rule code"),
    (["--max-increase", "2"], "--max-increase compares with a baseline, but none was given"),
    (["--baseline", "missing.json"], "baseline: report file missing.json does not exist"),
])
def test_exit_2_on_bad_input_with_one_line(cli, args, message):
    code, out, err = cli("check", BAD, *LOAD, *args)
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {message}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_exit_2_on_corrupt_baseline_and_missing_model(cli, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"schema_version": 1, "layers": [{"name": ')
    code, _, err = cli("check", BAD, *LOAD, "--baseline", corrupt)
    assert code == 2 and err.startswith(f"error: baseline: cannot read report {corrupt}")
    code, _, err = cli("check", SM / "nope.pt", *LOAD, "--max-dead", "5%")
    assert code == 2 and "nope.pt does not exist" in err


def test_ci_formats_report_a_check_that_could_not_run(cli, tmp_path):
    import xml.etree.ElementTree as ET

    code, out, err = cli("check", SM / "nope.pt", *LOAD, "--format", "github")
    assert code == 2 and out.startswith("::error title=deadrelu check could not run::")
    assert "nope.pt does not exist" in out and err.startswith("error: ")
    code, out, _ = cli("check", SM / "nope.pt", *LOAD, "--format", "junit")
    suite = ET.fromstring(out).find("testsuite")
    assert code == 2 and suite.get("errors") == "1"
    assert "nope.pt does not exist" in suite.find("testcase/error").get("message")
    report = tmp_path / "junit.xml"
    code, out, _ = cli("check", SM / "nope.pt", *LOAD, "--format", "junit", "-o", report)
    assert code == 2 and out == "" and ET.parse(report).getroot().get("errors") == "1"


def test_no_gate_uses_fail_on_error_and_says_so(cli):
    code, out, _ = cli("check", GOOD, *LOAD)
    assert code == 0
    assert "no gate configured: using the default --fail-on error" in out


# -- baselines ------------------------------------------------------------------------------


def test_baseline_regression_fails_per_model_and_layer(cli, baseline):
    code, out, _ = cli("check", BAD, *LOAD, "--baseline", baseline, "--max-increase", "2pp")
    assert code == 1
    assert "FAIL max-increase: dead 66.7% vs baseline 12.8%: +53.9 pp > limit +2.0 pp" in out
    assert "FAIL max-increase-layer[net.1]: dead 90.6% vs baseline 3.9%: +86.7 pp" in out
    assert "111 unit(s) dead now but not in the baseline" in out


def test_baseline_of_the_same_checkpoint_passes_with_zero_increase(cli, baseline):
    code, out, _ = cli("check", GOOD, *LOAD, "--baseline", baseline)
    assert code == 0
    assert "baseline given without --max-increase: any rise in dead fraction fails" in out
    assert "deadrelu check: all 4 gates passed" in out


# -- formats ----------------------------------------------------------------------------------


def test_junit_on_stdout_parses(cli):
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead-layer", "*=50%", "--format", "junit")
    assert code == 1
    root = ET.fromstring(out.encode())
    cases = root.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["net.1", "net.3", "net.5"]
    assert [c.find("failure") is not None for c in cases] == [True, True, False]


def test_github_annotations_and_job_summary(cli, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead", "20%", "--format", "github")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("::error file=")
    assert ",title=deadrelu max-dead::dead 66.7%25 > limit 20.0%25 (+46.7 pp)" in first
    assert all(line.startswith("::") for line in out.splitlines()[:-1])
    assert "| max-dead | model | 66.7% | 20.0% | **FAIL** (+46.7 pp) |" in summary.read_text()


@pytest.mark.parametrize("fmt, check", [
    ("json", lambda text: json.loads(text)["passed"] is False),
    ("sarif", lambda text: json.loads(text)["runs"][0]["tool"]["driver"]["name"] == "deadrelu"),
    ("markdown", lambda text: text.startswith("### :x: deadrelu check: 1 of 1 gate failed")),
])
def test_machine_formats_carry_only_that_format(cli, fmt, check):
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead", "20%", "--format", fmt)
    assert code == 1 and check(out)


def test_output_file_and_table_on_stdout(cli, tmp_path):
    target = tmp_path / "junit.xml"
    code, out, err = cli("check", BAD, *LOAD, "--max-dead", "20%", "-f", "junit", "-o", target)
    assert code == 1
    assert ET.parse(target).getroot().get("failures") == "1"
    assert "FAIL max-dead" in out and f"wrote junit to {target}" in err


# -- configuration --------------------------------------------------------------------------


def test_gates_from_pyproject_and_flags_win(cli, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.deadrelu.check]\nmax-dead = "20%"\nfail-on = ["DR013"]\n\n'
        '[tool.deadrelu.check.max-dead-layer]\n"net.*" = "95%"\n"net.5" = "10%"\n'
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("check", BAD, *LOAD)
    assert code == 1
    assert "FAIL max-dead:" in out
    assert "FAIL max-dead-layer[net.5]: dead 39.8% > limit 10.0%" in out  # last glob wins
    assert "FAIL max-dead-layer[net.1]" not in out
    assert "fail-on DR013" in out
    code, out, _ = cli("check", BAD, *LOAD, "--max-dead", "70%", "--max-dead-layer", "net.5=40%")
    assert code == 0, out


def test_exit_zero_and_baseline_from_config(cli, tmp_path, monkeypatch, baseline):
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.deadrelu.check]\nbaseline = "{baseline.as_posix()}"\nmax-increase = "2%"\n'
        "exit-zero = true\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("check", BAD, *LOAD)
    assert code == 0
    assert "FAIL max-increase:" in out and f"baseline: {baseline.as_posix()}" in out


@pytest.mark.parametrize("fmt", ["table", "json", "github", "junit", "sarif", "markdown"])
def test_o_always_leaves_a_file_when_the_check_could_not_run(cli, tmp_path, fmt):
    """A CI step uploads the -o file whatever happened: each format says why in its own terms
    (the SARIF, JUnit and JSON files are validated against their schemas)."""
    target = tmp_path / f"out.{fmt}"
    code, out, err = cli("check", SM / "nope.pt", *LOAD, "--format", fmt, "-o", target)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "nope.pt does not exist" in err
    assert "nope.pt does not exist" in target.read_text(encoding="utf-8")


def test_the_error_file_never_lands_on_an_input(cli, tmp_path):
    data = tmp_path / "data.npy"
    data.write_bytes(Path(LOAD[3]).read_bytes())
    before = data.read_bytes()
    code, _, err = cli("check", SM / "nope.pt", "--arch", LOAD[1], "--data", data,
                       "--format", "sarif", "-o", data)
    assert code == 2 and data.read_bytes() == before
