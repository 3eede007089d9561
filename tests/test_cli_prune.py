"""``deadrelu prune`` end to end on the sample models, and its one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_pruning")

pytestmark = pytest.mark.usefixtures("forget_models_module")
ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
DATA = SM / "data" / "digits_test.npy"
MLP = ["--arch", f"{SM}/models.py:DigitsMLP"]


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(np.load(DATA)).float())


def test_prune_the_high_lr_mlp_then_scan_and_load_the_result(cli, tmp_path):
    out = tmp_path / "pruned.pt"
    r = cli("prune", SM / "mlp_high_lr.pt", *MLP, "--data", DATA, "-o", out, "--json", "--no-progress")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    metrics = json.loads((SM / "metrics.json").read_text())["models"]["mlp_high_lr"]["dead_test"]
    assert result["units_removed"] == sum(dead for dead, _ in metrics.values())
    assert result["max_abs_diff"] <= 1e-5 * result["output_scale"]
    assert result["params"]["after"] < result["params"]["before"]
    # the pruned pickle loads safely (no --trust-checkpoint) and has no dead units left
    r = cli("scan", out, "--import-path", SM, "--data", DATA, "--format", "json", "--no-progress")
    assert r.code == 0, r.err
    assert json.loads(r.out)["summary"]["dead"] == 0
    # and with torch.load; its outputs are the original's
    sys.path.insert(0, str(SM))
    try:
        pruned = torch.load(out, weights_only=False)
        from deadrelu.loading import load_model

        original = load_model(SM / "mlp_high_lr.pt", arch=f"{SM}/models.py:DigitsMLP").model
    finally:
        sys.path.remove(str(SM))
    a, b = _outputs(original), _outputs(pruned)
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def test_state_dict_format_writes_safetensors_and_a_plan(cli, tmp_path):
    out = tmp_path / "pruned.safetensors"
    r = cli("prune", SM / "mlp_high_lr.pt", *MLP, "--data", DATA, "-o", out,
            "--format", "state-dict", "--no-progress")
    assert r.code == 0, r.err
    assert "removed" in r.out and "parameters" in r.out
    plan = json.loads((tmp_path / "pruned.plan.json").read_text())
    assert plan["layers"]["net.0"]["out_features"] < 128
    import deadrelu
    from deadrelu.loading import load_model

    fresh = load_model(SM / "mlp_healthy.pt", arch=f"{SM}/models.py:DigitsMLP").model
    rebuilt = deadrelu.load_pruned(fresh, out)
    original = load_model(SM / "mlp_high_lr.pt", arch=f"{SM}/models.py:DigitsMLP").model
    a, b = _outputs(original), _outputs(rebuilt)
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def test_errors_are_one_line_with_exit_2(cli, tmp_path):
    model = SM / "mlp_high_lr.pt"
    r = cli("prune", model, *MLP, "--data", DATA, "-o", model, "--no-progress")
    assert r.code == 2 and "would overwrite the input" in r.err and "Traceback" not in r.err
    r = cli("prune", model, *MLP, "--data", DATA, "-o", tmp_path / "x.pt", "--layers", "head.*",
            "--no-progress")
    assert r.code == 2 and "matches no activation layer" in r.err
    assert r.err.count("\n") == 1
    r = cli("prune", model, *MLP, "--data", DATA, "-o", tmp_path / "x.pt", "--min-samples", "1000",
            "--no-progress")
    assert r.code == 2 and "only 360 samples" in r.err
    assert not (tmp_path / "x.pt").exists()


def test_nothing_to_prune_and_a_model_the_verifier_cannot_run(cli, tmp_path):
    arch = tmp_path / "nets.py"
    arch.write_text(
        "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
        "class Leaky(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc1 = nn.Linear(64, 16); self.fc2 = nn.Linear(16, 10)\n"
        "        with torch.no_grad(): self.fc1.bias[3] = -1e4\n"
        "    def forward(self, x):\n"
        "        return self.fc2(F.leaky_relu(self.fc1(x)))\n"
        "class Fixed(Leaky):\n"
        "    def forward(self, x):\n"
        "        return self.fc2(F.relu(self.fc1(x)).reshape(-1, 16))\n"
    )
    for name in ("Leaky", "Fixed"):
        torch.manual_seed(0)
        sys.path.insert(0, str(tmp_path))
        try:
            import importlib

            nets = importlib.import_module("nets")
            torch.save(getattr(nets, name)().state_dict(), tmp_path / f"{name}.pt")
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("nets", None)
    r = cli("prune", tmp_path / "Leaky.pt", "--arch", f"{arch}:Leaky", "--data", DATA,
            "-o", tmp_path / "out.pt", "--no-progress")
    assert r.code == 2 and "nothing to prune" in r.err and "not constant" in r.err
    r = cli("prune", tmp_path / "Fixed.pt", "--arch", f"{arch}:Fixed", "--data", DATA,
            "-o", tmp_path / "out.pt", "--no-progress")
    assert r.code == 2 and "forward fail" in r.err and "nothing was pruned" in r.err
    assert not (tmp_path / "out.pt").exists()


def test_whole_model_pickle_and_an_image_folder_as_scan_takes_them(cli, tmp_path):
    out = tmp_path / "cnn.pt"
    r = cli("prune", SM / "cnn_full.pt", "--import-path", SM, "--data", SM / "data" / "digits_png",
            "-o", out, "--json", "--no-progress")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    assert [x["layer"] for x in result["removed"]] == ["relu3"]
    assert result["widths"]["fc1"]["out_features"] == 64 - len(result["removed"][0]["units"])
    r = cli("scan", out, "--import-path", SM, "--data", SM / "data" / "digits_png", "-q")
    assert r.code == 0 and "no dead units" in r.out.lower(), r.out


def test_missing_torch_pruning_is_one_line_naming_the_pip_command(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # import fails as if not installed
    r = cli("prune", SM / "mlp_high_lr.pt", *MLP, "--data", DATA, "-o", tmp_path / "x.pt")
    assert r.code == 2 and "pip install 'deadrelu[prune]'" in r.err and r.err.count("\n") == 1
