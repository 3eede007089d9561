"""Dead at initialization vs killed by training: fresh copies scanned on the same data (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from deadrelu.cli import main
from deadrelu.init_compare import init_baseline, reset_copy

pytestmark = pytest.mark.usefixtures("forget_models_module")
ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
DATA = SM / "data" / "digits_test.npy"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]


def _json(capsys, *args) -> dict:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert int(exc.code or 0) in (0, 1), capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _by_code(report: dict, code: str) -> dict[str, dict]:
    return {f["layer"]: f for f in report["findings"] if f["code"] == code}


def test_healthy_sample_gets_a_born_dead_statement_and_no_unknown_cause_for_them(capsys):
    # Before: two DR013 "unknown cause" warnings for units its README says were dead
    # from initialization.
    report = _json(capsys, "scan", SM / "mlp_healthy.pt", *MLP, "--data", DATA,
                   "--format", "json", "--no-progress")
    init = report["meta"]["init"]
    assert init["runs"] == 3 and set(init["layers"]) == {"net.1", "net.3", "net.5"}
    born = _by_code(report, "DR015")
    assert set(born) == {"net.1", "net.3", "net.5"}
    unknown = _by_code(report, "DR013")
    for layer, finding in born.items():
        ev = finding["evidence"]
        assert ev["born_dead"] == min(ev["count"], max(init["layers"][layer]))
        assert "were dead from initialization" in finding["message"]
        if ev["died_in_training"] == 0:
            assert layer not in unknown
        else:  # only the units beyond a fresh init stay unexplained
            assert unknown[layer]["evidence"]["died_in_training"] == ev["died_in_training"]
    # net.5: 23 dead, fresh copies leave more than that dead: all born dead
    assert "net.5" not in unknown and born["net.5"]["evidence"]["born_dead"] == 23


def test_compare_init_can_be_turned_off_and_works_on_module_pickles(capsys):
    off = _json(capsys, "scan", SM / "mlp_healthy.pt", *MLP, "--data", DATA, "--format", "json",
                "--no-progress", "--compare-init", "off")
    assert "init" not in off["meta"] and not _by_code(off, "DR015")
    pickled = _json(capsys, "scan", SM / "mlp_healthy_full.pt", "--import-path", SM,
                    "--trust-checkpoint", "--data", DATA, "--format", "json", "--no-progress",
                    "--compare-init", "on")
    assert "reset_parameters" in pickled["meta"]["init"]["method"]
    assert _by_code(pickled, "DR015")


def test_check_compares_by_default_when_cheap(capsys):
    report = _json(capsys, "check", SM / "mlp_healthy.pt", *MLP, "--data", DATA,
                   "--format", "json", "--no-progress")
    text = json.dumps(report)
    assert "DR015" in text


def test_reset_copy_leaves_the_model_alone_and_redraws_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = reset_copy(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(fresh[0].weight, model[0].weight)


def test_init_baseline_keeps_the_callers_random_state_and_counts_per_run():
    import deadrelu

    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
    data = torch.rand(200, 4)  # non-negative input: some units are born dead
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    baseline = init_baseline(model, lambda m: deadrelu.scan(m, data), runs=4)
    assert torch.equal(torch.rand(1), expected_next)
    assert baseline["runs"] == 4 and all(len(v) == 4 for v in baseline["layers"].values())
    # a brute-force count for run 0: same seed, same reset
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = reset_copy(model)
    with torch.no_grad():
        h = fresh[1](fresh[0](data))
        out = fresh[3](fresh[2](h))
    assert baseline["layers"]["1"][0] == int((h.amax(0) <= 0).sum())
    assert baseline["layers"]["3"][0] == int((out.amax(0) <= 0).sum())


def test_export_program_of_the_same_weights_keeps_the_diagnosis(tmp_path):
    # Before: the exported program lost DR001 and its weight evidence, named its layers
    # "(module)" and read the last ReLU as the output's activation (DR008).
    import importlib.util

    import numpy as np

    import deadrelu
    from deadrelu.loading import load_model

    spec = importlib.util.spec_from_file_location("_sm_models_export", SM / "models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.DigitsMLP()
    model.load_state_dict(torch.load(SM / "mlp_high_lr.pt"))
    model.eval()
    x = torch.from_numpy(np.load(DATA))
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(model, (x[:4],), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "mlp.pt2")
    loaded = load_model(tmp_path / "mlp.pt2")
    assert loaded.format == "export"
    direct = deadrelu.scan(model, x, batch_size=60)
    exported = deadrelu.scan(loaded.model, x, batch_size=60)

    def summary(report):
        return [(f.code, f.layer, f.cause, f.evidence.get("layer"), f.evidence.get("count"),
                 round(f.evidence.get("weight_growth") or 0, 6),
                 round(f.evidence.get("bias_growth") or 0, 6)) for f in report.findings]

    assert summary(exported) == summary(direct)
    assert [f.code for f in exported.findings] == ["DR001"] * 3
    assert all("(nn.ReLU)" in f.message and "(module)" not in f.message for f in exported.findings)
