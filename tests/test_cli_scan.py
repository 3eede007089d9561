"""``deadrelu scan`` end to end: sample models, output formats, bad input, Ctrl-C, help speed.

Most tests run the CLI in-process through ``deadrelu.cli.main`` (the same code path
as the console script, including the one-line error handling); a few run it as a
subprocess where the process boundary is the point (``python -m deadrelu``, what
``--help`` imports, tracebacks with ``--debug``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digests

from deadrelu.cli import main
from deadrelu.findings import Finding, Severity
from deadrelu.report import Report

pytestmark = pytest.mark.usefixtures("forget_models_module")
ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
DATA = SM / "data"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]
CNN = ["--arch", f"{SM}/models.py:DigitsCNN"]
METRICS = json.loads((SM / "metrics.json").read_text())




def _scan_json(cli, *args: object) -> dict:
    result = cli("scan", *args, "--format", "json", "--no-progress")
    assert result.code == 0, result.err
    return json.loads(result.out)


def _dead(report: dict) -> dict[str, int]:
    return {layer["name"]: layer["dead"] for layer in report["layers"]}


def _expected(model: str) -> dict[str, int]:
    return {name: dead for name, (dead, _units) in METRICS["models"][model]["dead_test"].items()}


# -- the sample models ---------------------------------------------------------------------


def test_state_dict_high_lr_many_dead(cli) -> None:
    report = _scan_json(cli, SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy")
    assert _dead(report) == _expected("mlp_high_lr")
    assert report["summary"]["dead_fraction"] > 0.5
    assert report["summary"]["samples"] == 360


def test_healthy_few_dead(cli) -> None:
    report = _scan_json(cli, SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy")
    assert _dead(report) == _expected("mlp_healthy")
    assert report["summary"]["dead_fraction"] < 0.15


def test_whole_model_pickle_with_import_path(cli) -> None:
    report = _scan_json(cli, SM / "mlp_high_lr_full.pt", "--import-path", SM,
                        "--data", DATA / "digits_test.npy")
    assert _dead(report) == _expected("mlp_high_lr")


def test_safetensors_with_npz(cli) -> None:
    report = _scan_json(cli, SM / "mlp_healthy.safetensors", *MLP, "--data", DATA / "digits_test.npz")
    assert _dead(report) == _expected("mlp_healthy")


def test_png_folder_for_mlp(cli) -> None:
    # The PNGs are rounded to 8 bits, so counts may differ slightly from the float data.
    report = _scan_json(cli, SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_png")
    assert report["summary"]["samples"] == 360
    assert report["summary"]["dead_fraction"] > 0.5


def test_cnn_state_dict_and_pickle(cli) -> None:
    expected = {"relu1": 0, "<model>:relu": 0, "relu3": METRICS["models"]["cnn"]["dead_test"]["relu3"][0]}
    report = _scan_json(cli, SM / "cnn.pt", *CNN, "--data", DATA / "digits_test_img.npy")
    assert _dead(report) == expected
    # Greyscale PNGs: channels are taken from the model's first conv layer.
    report = _scan_json(cli, SM / "cnn_full.pt", "--import-path", SM, "--data", DATA / "digits_png")
    assert _dead(report) == expected


def test_table_output_reads_well(cli) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--no-progress")
    assert result.code == 0
    assert result.err == ""
    out = result.out
    assert "DigitsMLP from mlp_high_lr.pt" in out and "digits_test.npy" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("net.")]
    assert [r[0] for r in rows] == ["net.1", "net.3", "net.5"]
    assert "87% dead" in out
    assert "3 of 3 layers have dead units: 238 of 384 units (62.0%) never fired on 360 samples" in out


def test_limit_and_batch_size(cli) -> None:
    report = _scan_json(cli, SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                        "--limit", 150, "--batch-size", 32)
    assert report["summary"]["samples"] == 150


def test_few_samples_warn_in_one_line(cli) -> None:
    result = cli("scan", SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--limit", 20, "--no-progress")
    assert result.code == 0
    assert result.err.startswith("warning: only 20 samples") and result.err.count("\n") == 1
    quiet = cli("scan", SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                "--limit", 20, "--quiet")
    assert quiet.err == "" and quiet.out.count("\n") == 1  # just the summary line


def test_inputs_unchanged(cli, tmp_path: Path) -> None:
    inputs = [SM / "mlp_high_lr_full.pt", SM / "cnn.pt", SM / "models.py", DATA]
    before = digests(*inputs)
    cli("scan", SM / "mlp_high_lr_full.pt", "--import-path", SM, "--data", DATA / "digits_test.npy",
        "--no-progress", "--output", tmp_path / "r.json", "--format", "json")
    cli("scan", SM / "cnn.pt", *CNN, "--data", DATA / "digits_png", "--no-progress")
    assert digests(*inputs) == before


# -- thresholds and config -----------------------------------------------------------------


def test_threshold_flags(cli) -> None:
    report = _scan_json(cli, SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                        "--rare", "5%", "--always-on", "0.9", "--dormancy", "dohare", "--tau", "0.1")
    assert report["thresholds"]["rare"] == 0.05
    assert report["thresholds"]["always_on"] == 0.9
    assert report["thresholds"]["dormancy"] == "dohare"


def test_select_and_ignore_flags_override_the_config(cli, tmp_path: Path) -> None:
    config = tmp_path / "deadrelu.toml"
    config.write_text('ignore = ["DR013"]\n')
    args = ("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy")
    assert {f["code"] for f in _scan_json(cli, *args[1:])["findings"]} == {"DR001"}
    ignored = _scan_json(cli, *args[1:], "--config", config, "--ignore", "dr001")
    assert ignored["findings"] == []
    selected = _scan_json(cli, *args[1:], "--select", "DR01,DR013")
    assert selected["findings"] == []
    result = cli(*args, "--ignore", "DR999")
    assert result.code == 2 and "'DR999' matches no rule" in result.err


def test_near_zero_always_on_threshold_is_refused(cli) -> None:
    result = cli("scan", SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--always-on", "0")
    assert result.code == 2 and "always_on=0.0 must be above 0.5" in result.err


def test_config_file_and_flag_override(cli, tmp_path: Path) -> None:
    config = tmp_path / "deadrelu.toml"
    config.write_text('rare = 0.2\nalways-on = 0.95\nbatch-size = 16\n')
    report = _scan_json(cli, SM / "mlp_healthy.pt", *MLP, "--data", DATA / "digits_test.npy",
                        "--config", config, "--rare", "0.1")
    assert report["thresholds"]["rare"] == 0.1  # the flag wins
    assert report["thresholds"]["always_on"] == 0.95  # the file fills the rest


def _sample_scan(**kwargs: object) -> Report:
    """The library's scan of mlp_high_lr on the digits, as the CLI loads them."""
    import warnings

    from deadrelu import scan
    from deadrelu.loading import LoadOptions, load_model_and_data

    loaded, source = load_model_and_data(LoadOptions(
        model=SM / "mlp_high_lr.pt", data=str(DATA / "digits_test.npy"), arch=MLP[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan(loaded.model, source, **kwargs)  # type: ignore[arg-type]


def test_exclude_layers_drops_findings_on_those_layers() -> None:
    full = _sample_scan()
    layers = {f.layer for f in full.findings if f.layer is not None}
    assert "net.1" in layers and len(layers) > 1  # a planted case: findings on several layers
    report = _sample_scan(exclude_layers=["net.1"])
    expected = [f for f in full.findings if f.layer != "net.1"]  # the brute-force filter
    assert [(f.code, f.layer) for f in report.findings] == [(f.code, f.layer) for f in expected]
    assert report.layer_records() == full.layer_records()  # the statistics stay
    # kept with the selection: re-diagnosis (new thresholds, a merge) leaves them out too
    rediagnosed = report.with_thresholds(report.thresholds)
    assert all(f.layer != "net.1" for f in rediagnosed.findings)
    assert _sample_scan(exclude_layers="net.*").findings == tuple(
        f for f in full.findings if f.layer is None)


def test_exclude_layers_of_the_config_gives_the_librarys_findings(cli, tmp_path: Path) -> None:
    # the CLI applies exclude-layers through deadrelu.scan: both report the same findings
    config = tmp_path / "deadrelu.toml"
    config.write_text('exclude-layers = ["net.1"]\n')
    cli_report = _scan_json(cli, SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                            "--config", config, "--compare-init", "off")
    library = _sample_scan(exclude_layers=["net.1"])
    assert [(f["code"], f["layer"]) for f in cli_report["findings"]] == [
        (f.code, f.layer) for f in library.findings]
    assert all(f["layer"] != "net.1" for f in cli_report["findings"])


def test_config_selection_reaches_the_scan(cli, tmp_path: Path) -> None:
    config = tmp_path / "deadrelu.toml"
    config.write_text('ignore = ["DR001"]\n[per-layer-ignores]\n"net.5" = ["DR010"]\n')
    report = _scan_json(cli, SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                        "--config", config)
    found = {(f["code"], f["layer"]) for f in report["findings"]}
    assert not any(code == "DR001" for code, _ in found)
    assert ("DR010", "net.5") not in found
    assert report["meta"]["selection"]["ignore"] == ["DR001"]


# -- formats and --output ------------------------------------------------------------------


def test_json_is_only_json_and_round_trips(cli) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--format", "json")
    data = json.loads(result.out)  # nothing but JSON on stdout
    report = Report.from_dict(data)
    assert report.to_dict()["layers"] == data["layers"]
    assert report.summary() == {**data["summary"]}
    assert data["meta"]["model"].startswith("DigitsMLP from mlp_high_lr.pt")


def test_csv_format(cli) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [(r["layer"], int(r["dead"])) for r in rows] == list(_expected("mlp_high_lr").items())


def test_markdown_format(cli) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--format", "markdown")
    assert result.out.startswith("# deadrelu report")
    assert "| `net.1` | relu | 128 | 111 |" in result.out
    assert "## Findings" in result.out and "**Summary:**" in result.out


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown", "table"])
def test_output_file(cli, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"report.{fmt}"
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--format", fmt, "--output", target, "--no-progress")
    assert result.code == 0
    assert "net.1" in result.out  # the table is still printed
    assert f"wrote {fmt} report to {target}" in result.err
    text = target.read_text()
    if fmt == "json":
        assert Report.from_dict(json.loads(text)).samples == 360
    else:
        assert "net.1" in text and "\x1b[" not in text  # no colour codes in files
        assert all(line == line.rstrip() for line in text.splitlines())  # no padding
    quiet = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                "--format", fmt, "--output", target, "--quiet")
    assert quiet.code == 0 and quiet.out == "" and quiet.err == ""


def test_output_never_overwrites_inputs(cli, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes((SM / "mlp_healthy.pt").read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.npy").write_bytes((DATA / "digits_test.npy").read_bytes())
    before = digests(model, data)
    for output in (model, data / "x.npy", data / "report.json"):
        result = cli("scan", model, *MLP, "--data", data, "--output", output, "--format", "json")
        assert result.code == 2
        assert result.err.startswith("error: --output") and result.err.count("\n") == 1
    assert digests(model, data) == before
    assert not (data / "report.json").exists()


# -- bad input: one line on stderr, exit 2, inputs untouched ---------------------------------


def _bad_inputs(tmp: Path) -> dict[str, list[object]]:
    good_data = ["--data", DATA / "digits_test.npy"]
    truncated = tmp / "truncated.pt"
    truncated.write_bytes((SM / "mlp_healthy.pt").read_bytes()[:20_000])
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(bytes(range(256)) * 8)
    unknown = tmp / "model.xyz"
    unknown.write_text("hello")
    not_model = tmp / "settings.pt"
    torch.save({"lr": 0.1, "epoch": 3}, not_model)
    empty = tmp / "empty"
    empty.mkdir()
    bad_images = tmp / "bad_images"
    (bad_images / "0").mkdir(parents=True)
    (bad_images / "0" / "a.png").write_bytes((DATA / "digits_png" / "0" / "024.png").read_bytes())
    (bad_images / "0" / "b.png").write_bytes(b"not a png at all")
    narrow = tmp / "narrow.npy"
    np.save(narrow, np.zeros((10, 32), dtype=np.float32))
    boom = tmp / "boom.py"
    boom.write_text(
        "import torch\n"
        "class Boom(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(64, 8)\n"
        "    def forward(self, x):\n"
        "        x = torch.relu(self.fc(x))\n"
        "        raise ValueError('boom in forward')\n"
    )
    boom_weights = tmp / "boom.pt"
    torch.save({"fc.weight": torch.zeros(8, 64), "fc.bias": torch.zeros(8)}, boom_weights)
    return {
        "missing model file": [tmp / "nope.pt", *MLP, *good_data],
        "truncated checkpoint": [truncated, *MLP, *good_data],
        "corrupt checkpoint": [corrupt, *MLP, *good_data],
        "not a model": [not_model, *good_data],
        "data file given as model": [DATA / "digits_test.npy", *good_data],
        "unknown model extension": [unknown, *good_data],
        "state dict without --arch": [SM / "mlp_healthy.pt", *good_data],
        "missing data": [SM / "mlp_healthy.pt", *MLP, "--data", tmp / "nothing"],
        "unknown data extension": [SM / "mlp_healthy.pt", *MLP, "--data", unknown],
        "empty data directory": [SM / "mlp_healthy.pt", *MLP, "--data", empty],
        "unreadable image": [SM / "mlp_healthy.pt", *MLP, "--data", bad_images],
        "data does not fit": [SM / "mlp_healthy.pt", *MLP, "--data", narrow],
        "arch module missing": [SM / "mlp_healthy.pt", "--arch", "no_such_module:Net", *good_data],
        "arch class missing": [SM / "mlp_healthy.pt", "--arch", f"{SM}/models.py:Nope", *good_data],
        "arch kwargs not JSON": [SM / "mlp_healthy.pt", *MLP, "--arch-kwargs", "{bad", *good_data],
        "forward raises": [boom_weights, "--arch", f"{boom}:Boom", *good_data],
        "forward raises (wrong input rank)": [SM / "cnn.pt", *CNN, *good_data],
        "bad threshold": [SM / "mlp_healthy.pt", *MLP, *good_data, "--rare", "150%"],
        "bad device": [SM / "mlp_healthy.pt", *MLP, *good_data, "--device", "tpu"],
    }


BAD_IDS = [
    "missing model file", "truncated checkpoint", "corrupt checkpoint", "not a model",
    "data file given as model", "unknown model extension", "state dict without --arch",
    "missing data", "unknown data extension", "empty data directory", "unreadable image",
    "data does not fit", "arch module missing", "arch class missing", "arch kwargs not JSON",
    "forward raises", "forward raises (wrong input rank)", "bad threshold", "bad device",
]


@pytest.mark.parametrize("case", BAD_IDS)
def test_bad_input_one_line_exit_2(cli, tmp_path: Path, case: str) -> None:
    args = _bad_inputs(tmp_path)[case]
    before = digests(tmp_path, SM / "mlp_healthy.pt", DATA / "digits_test.npy")
    result = cli("scan", *args, "--no-progress")
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("error: ")
    assert result.err.count("\n") == 1, result.err
    assert " — " in result.err  # problem — what to do
    assert "Traceback" not in result.err + result.out
    assert result.out == ""
    assert digests(tmp_path, SM / "mlp_healthy.pt", DATA / "digits_test.npy") == before


def test_expected_messages(cli, tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    expect = {
        "missing model file": "does not exist",
        "truncated checkpoint": "truncated or corrupt",
        "not a model": "not a model or state dict",
        "unknown model extension": "not a PyTorch model file",
        "empty data directory": "is empty",
        "unreadable image": "b.png cannot be read",
        "data does not fit": "expects 64 features",
        "arch module missing": "no module named 'no_such_module'",
        "forward raises": "forward raised ValueError",
    }
    for case, text in expect.items():
        result = cli("scan", *cases[case], "--no-progress")
        assert text in result.err, (case, result.err)


def test_torchscript_is_refused_by_name_before_the_data_is_judged(cli, tmp_path: Path) -> None:
    import torch
    from torch import nn

    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(64, 8), nn.ReLU())), str(path))
    result = cli("scan", path, "--data", DATA / "digits_test_img.npy", "--no-progress")
    assert result.code == 2
    assert result.err.startswith(f"error: {path} is a TorchScript archive")


def test_debug_shows_the_traceback_and_keeps_exit_code_2(cli, tmp_path: Path, capsys) -> None:
    args = _bad_inputs(tmp_path)["truncated checkpoint"]
    with pytest.raises(SystemExit) as info:
        main(["scan", *map(str, args), "--debug"])
    assert info.value.code == 2  # 1 would read as "a gate failed" in deadrelu check
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err and "\nerror: " in err


def test_output_never_overwrites_model_code_or_config(cli, tmp_path: Path) -> None:
    arch = tmp_path / "models.py"
    arch.write_text((SM / "models.py").read_text())
    before = arch.read_text()
    result = cli("scan", SM / "mlp_high_lr.pt", "--arch", f"{arch}:DigitsMLP",
                 "--data", SM / "data" / "digits_test.npy", "-q", "-o", arch)
    assert result.code == 2 and "would overwrite the input" in result.err
    assert arch.read_text() == before
    result = cli("scan", SM / "mlp_high_lr.pt", "--arch", "models:DigitsMLP",
                 "--import-path", tmp_path, "--data", SM / "data" / "digits_test.npy", "-q",
                 "-o", tmp_path / "report.txt")
    assert result.code == 2 and "inside the input folder" in result.err
    config = tmp_path / "deadrelu.toml"
    config.write_text("[tool.deadrelu]\nrare = 0.02\n")
    result = cli("scan", SM / "mlp_high_lr.pt", "--arch", f"{arch}:DigitsMLP",
                 "--data", SM / "data" / "digits_test.npy", "--config", config, "-q", "-o", config)
    assert result.code == 2 and "would overwrite the input" in result.err


def test_debug_traceback_subprocess(tmp_path: Path) -> None:
    args = [str(a) for a in _bad_inputs(tmp_path)["missing model file"]]
    plain = subprocess.run([sys.executable, "-m", "deadrelu", "scan", *args],
                           capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("error: model file")
    debug = subprocess.run([sys.executable, "-m", "deadrelu", "scan", *args, "--debug"],
                           capture_output=True, text=True, cwd=ROOT)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert "CheckpointError" in debug.stderr


def test_usage_error_exit_2(cli) -> None:
    result = cli("scan", SM / "mlp_healthy.pt")  # --data missing
    assert result.code == 2 and "--data" in result.err
    assert "Traceback" not in result.err


# -- Ctrl-C ----------------------------------------------------------------------------------

INTERRUPTING = '''
import numpy as np
import torch

def batches():
    x = torch.from_numpy(np.load({data!r}))
    for i, start in enumerate(range(0, len(x), 64)):
        if i == 3:
            raise KeyboardInterrupt
        yield x[start:start + 64]
'''


@pytest.fixture
def interrupting(tmp_path: Path) -> str:
    path = tmp_path / "interrupting.py"
    path.write_text(INTERRUPTING.format(data=str(DATA / "digits_test.npy")))
    return f"{path}:batches"


def test_ctrl_c_prints_partial_report(cli, interrupting: str) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", interrupting, "--no-progress")
    assert result.code == 130
    assert "PARTIAL" in result.out and "first 192 samples" in result.out
    assert result.out.rstrip().splitlines()[-1].startswith("PARTIAL: ")


def test_ctrl_c_json_marks_partial(cli, interrupting: str) -> None:
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", interrupting, "--format", "json")
    assert result.code == 130
    data = json.loads(result.out)
    assert data["meta"]["partial"] is True and data["summary"]["samples"] == 192
    assert result.err.startswith("warning: interrupted")


# -- process-level -------------------------------------------------------------------------


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deadrelu", "scan", str(SM / "mlp_healthy.pt"), *MLP,
         "--data", str(DATA / "digits_test.npy"), "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert _dead(json.loads(done.stdout)) == _expected("mlp_healthy")


HELP_PROBE = """
import sys
sys.argv = ["deadrelu", *{args!r}]
from deadrelu.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "pandas", "numpy") if m in sys.modules)
print("HEAVY:", ",".join(heavy), "CODE:", code)
"""


@pytest.mark.parametrize("args", [["--help"], ["scan", "--help"]])
def test_help_imports_no_torch(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", HELP_PROBE.format(args=args)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "100"})
    last = done.stdout.strip().splitlines()[-1]
    assert last == "HEAVY:  CODE: 0", done.stdout[-2000:] + done.stderr
    assert "Examples" in done.stdout or "scan" in done.stdout


def test_scan_help_shows_examples_and_every_option(cli) -> None:
    result = cli("scan", "--help")
    assert result.code == 0
    for option in ("--data", "--arch", "--arch-kwargs", "--import-path", "--trust-checkpoint",
                   "--batch-size", "--limit", "--device", "--image-size", "--normalize",
                   "--target", "--channels", "--config", "--rare", "--always-on", "--saturated",
                   "--dormancy", "--tau", "--format", "--output", "--no-progress", "--quiet",
                   "--debug"):
        assert option in result.out, option
    assert "sample_models/mlp_high_lr.pt" in result.out


def test_report_with_findings_in_table(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # Findings come from the diagnosis rules; whatever they are, the table shows them.
    import deadrelu.cli.running as running

    real = running.run_scan

    def with_finding(*args, **kwargs):
        report = real(*args, **kwargs)
        return replace(report, findings=(Finding("DR001", Severity.ERROR, "net.1", "planted message",
                                                 "learning_rate", "planted fix"),))

    monkeypatch.setattr(running, "run_scan", with_finding)
    result = cli("scan", SM / "mlp_high_lr.pt", *MLP, "--data", DATA / "digits_test.npy",
                 "--no-progress")
    assert "DR001" in result.out and "planted message" in result.out and "planted fix" in result.out


def test_exclude_layers_that_is_not_globs_is_one_clear_error() -> None:
    from deadrelu import scan
    from deadrelu.errors import ConfigError

    with pytest.raises(ConfigError, match="exclude_layers must be a list of site-name globs"):
        scan(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), torch.randn(4, 2),
             exclude_layers=[3])  # type: ignore[list-item]
