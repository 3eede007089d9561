"""Checks on the shipped sample checkpoints and data in ``sample_models/``.

Plain torch only (no ``deadrelu`` import): these pin down what the sample
models *are*, so scanner tests can rely on them. Regenerate the files with
``python sample_models/train.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SM = ROOT / "sample_models"
DATA = SM / "data"


def _load_models_module():
    # Load by file path under a private name, so nothing is left in sys.modules
    # under "models" (the name the whole-model pickles use).
    spec = importlib.util.spec_from_file_location("_sample_models_models", SM / "models.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


M = _load_models_module()


@pytest.fixture(scope="module")
def x_test() -> torch.Tensor:
    return torch.from_numpy(np.load(DATA / "digits_test.npy"))


@pytest.fixture(scope="module")
def y_test() -> torch.Tensor:
    return torch.from_numpy(np.load(DATA / "digits_test_labels.npy"))


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((SM / "metrics.json").read_text())


def load_full(name: str) -> nn.Module:
    """torch.load a whole-model pickle with sample_models/ on sys.path, then restore sys.path."""
    saved_path = list(sys.path)
    saved_models = sys.modules.pop("models", None)
    sys.path.insert(0, str(SM))
    try:
        model = torch.load(SM / name, weights_only=False, map_location="cpu")
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("models", None)
        if saved_models is not None:
            sys.modules["models"] = saved_models
    return model


def load_mlp(path: Path) -> nn.Module:
    model = M.DigitsMLP()
    model.load_state_dict(torch.load(path, map_location="cpu"))  # weights_only default
    return model.eval()


def dead_per_layer(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Brute force: units whose ReLU output is 0 for every sample (and position)."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o))
        for n, m in model.named_modules()
        if isinstance(m, nn.ReLU)
    ]
    if hasattr(model, "bn2"):  # DigitsCNN: functional F.relu after bn2
        hooks.append(
            model.bn2.register_forward_hook(
                lambda _m, _i, o: outs.__setitem__("F.relu(bn2)", F.relu(o))
            )
        )
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    res = {}
    for n, a in outs.items():
        alive = (a > 0).transpose(0, 1).reshape(a.shape[1], -1).any(1)
        res[n] = (int((~alive).sum()), alive.numel())
    return res


def total_fraction(d: dict[str, tuple[int, int]]) -> float:
    return sum(a for a, _ in d.values()) / sum(b for _, b in d.values())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------- data


def test_data_arrays(x_test, y_test):
    assert x_test.dtype == torch.float32 and x_test.shape == (360, 64)
    assert float(x_test.min()) >= 0.0 and float(x_test.max()) <= 1.0
    assert y_test.dtype == torch.int64 and y_test.shape == (360,)
    assert set(y_test.tolist()) == set(range(10))
    img = np.load(DATA / "digits_test_img.npy")
    assert img.dtype == np.float32 and img.shape == (360, 1, 8, 8)
    np.testing.assert_array_equal(img.reshape(360, 64), x_test.numpy())
    with np.load(DATA / "digits_test.npz") as z:
        assert set(z.files) == {"x", "y"}
        np.testing.assert_array_equal(z["x"], x_test.numpy())
        np.testing.assert_array_equal(z["y"], y_test.numpy())


def test_png_folder_matches_npy(x_test, y_test):
    from PIL import Image

    root = DATA / "digits_png"
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert classes == [str(c) for c in range(10)]
    files = sorted(root.glob("*/*.png"))
    assert len(files) == len(x_test) == 360
    x = x_test.numpy()
    y = y_test.numpy()
    for f in files:
        idx, label = int(f.stem), int(f.parent.name)
        assert y[idx] == label
        im = Image.open(f)
        assert im.mode == "L" and im.size == (8, 8)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        np.testing.assert_allclose(arr.reshape(64), x[idx], atol=1 / 255)
    size = sum(f.stat().st_size for f in DATA.rglob("*") if f.is_file())
    assert size < 2_000_000


# ---------------------------------------------------------------- MLPs


def test_state_dict_keys_and_shapes():
    sd = torch.load(SM / "mlp_healthy.pt", map_location="cpu")
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "net.0.weight": (128, 64), "net.0.bias": (128,),
        "net.2.weight": (128, 128), "net.2.bias": (128,),
        "net.4.weight": (128, 128), "net.4.bias": (128,),
        "net.6.weight": (10, 128), "net.6.bias": (10,),
    }  # fmt: skip


def test_healthy_mlp_formats_agree(x_test, y_test):
    from safetensors.torch import load_file

    sd = load_mlp(SM / "mlp_healthy.pt").state_dict()
    st = load_file(str(SM / "mlp_healthy.safetensors"))
    assert sd.keys() == st.keys()
    for k in sd:
        assert torch.equal(sd[k], st[k]), k
    full = load_full("mlp_healthy_full.pt")
    assert type(full).__name__ == "DigitsMLP" and type(full).__module__ == "models"
    for k, v in full.state_dict().items():
        assert torch.equal(v, sd[k]), k
    out = full.eval()(x_test)
    assert out.shape == (360, 10)


def test_healthy_mlp_few_dead(x_test, y_test):
    model = load_mlp(SM / "mlp_healthy.pt")
    assert accuracy(model, x_test, y_test) > 0.94
    dead = dead_per_layer(model, x_test)
    assert list(dead) == ["net.1", "net.3", "net.5"]
    assert all(a / b < 0.25 for a, b in dead.values()), dead
    assert total_fraction(dead) < 0.2, dead


def test_high_lr_mlp_many_dead(x_test, y_test):
    model = load_mlp(SM / "mlp_high_lr.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    dead = dead_per_layer(model, x_test)
    fracs = [a / b for a, b in dead.values()]
    assert max(fracs) > 0.5, dead
    assert any(0.3 <= f <= 0.8 for f in fracs), dead
    assert total_fraction(dead) > 0.4, dead
    healthy = dead_per_layer(load_mlp(SM / "mlp_healthy.pt"), x_test)
    assert total_fraction(dead) > 3 * total_fraction(healthy)
    full = load_full("mlp_high_lr_full.pt")
    for k, v in full.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_high_lr_training_checkpoint_carries_its_optimizer(x_test):
    ckpt = torch.load(SM / "mlp_high_lr_ckpt.pt", map_location="cpu")  # weights_only default
    assert set(ckpt) == {"model", "optimizer", "epoch", "step"}
    assert (ckpt["epoch"], ckpt["step"]) == (20, 460)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["lr"] == 3e-2 and group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0
    # Adam's own step count agrees with the checkpoint's (one run wrote both)
    assert all(int(s["step"]) == 460 for s in ckpt["optimizer"]["state"].values())
    model = M.DigitsMLP()
    model.load_state_dict(ckpt["model"])
    dead = dead_per_layer(model.eval(), x_test)
    assert total_fraction(dead) > 0.4, dead


# ---------------------------------------------------------------- CNN


def test_cnn(x_test, y_test):
    img = torch.from_numpy(np.load(DATA / "digits_test_img.npy"))
    model = M.DigitsCNN()
    model.load_state_dict(torch.load(SM / "cnn.pt", map_location="cpu"))
    model.eval()
    out = model(img)
    assert out.shape == (360, 10)
    assert accuracy(model, img, y_test) > 0.95
    full = load_full("cnn_full.pt")
    assert type(full).__name__ == "DigitsCNN"
    assert not full.training, "cnn_full.pt should be saved in eval mode"
    with torch.no_grad():
        torch.testing.assert_close(full(img), out.detach())
    dead = dead_per_layer(model, img)
    assert list(dead) == ["relu1", "F.relu(bn2)", "relu3"]
    assert dead["relu1"][1] == 16 and dead["F.relu(bn2)"][1] == 32 and dead["relu3"][1] == 64


# ---------------------------------------------------------------- series


def test_series_dead_fraction_jumps_after_spike(x_test):
    steps = [100, 200, 300, 400, 500]
    files = sorted(p.name for p in (SM / "series").glob("*.pt"))
    assert files == sorted(f"step_{s}.pt" for s in steps)
    frac = {
        s: total_fraction(dead_per_layer(load_mlp(SM / "series" / f"step_{s}.pt"), x_test))
        for s in steps
    }
    assert all(frac[s] < 0.2 for s in (100, 200, 300)), frac
    assert frac[400] - frac[300] > 0.3, frac
    assert frac[500] > 0.5, frac


def test_metrics_json_matches_checkpoints(metrics, x_test):
    """The numbers in metrics.json (copied into the README) are what the files give."""
    for name in ("mlp_healthy", "mlp_high_lr"):
        dead = dead_per_layer(load_mlp(SM / f"{name}.pt"), x_test)
        assert {k: list(v) for k, v in dead.items()} == metrics["models"][name]["dead_test"]
    for entry in metrics["series"]["checkpoints"]:
        dead = dead_per_layer(load_mlp(SM / entry["file"]), x_test)
        assert {k: list(v) for k, v in dead.items()} == entry["dead_test"]
