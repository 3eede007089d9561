"""Train the sample models in this folder and write the held-out data used to scan them.

Run from the repository root (about 10 s on one CPU core)::

    python sample_models/train.py

Everything is seeded and runs on one CPU thread; a rerun on the same machine
and torch version rewrites byte-identical files. Another CPU or torch version
can give slightly different weights and dead counts (most visibly for the
high-LR model, whose training is chaotic). Outputs (all inside ``sample_models/``):

* ``mlp_healthy.pt`` / ``.safetensors`` / ``_full.pt``  - DigitsMLP, Adam lr=1e-3
* ``mlp_high_lr.pt`` / ``_full.pt``                      - DigitsMLP, Adam lr=3e-2 (many dead units)
* ``mlp_high_lr_ckpt.pt``                                - the same as a training checkpoint (weights, optimizer, epoch, step)
* ``cnn.pt`` / ``cnn_full.pt``                           - DigitsCNN, Adam lr=1e-3, saved in eval mode
* ``series/step_{100..500}.pt``                           - one DigitsMLP run with an LR spike after step 300
* ``data/``                                              - the 360-sample held-out split as npy/npz/PNG
* ``metrics.json``                                       - accuracies and brute-force dead-unit counts

The ``*_full.pt`` files are whole-model pickles. They reference the classes
as ``models.DigitsMLP`` / ``models.DigitsCNN`` because this script imports
``models.py`` as a top-level module with ``sample_models/`` on ``sys.path``.
Load them with ``sample_models/`` on ``sys.path`` and
``torch.load(path, weights_only=False)``.

Only needs torch, numpy, scikit-learn (bundled digits data, no download),
pillow and safetensors. Does not import ``deadrelu``.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Must be imported as the top-level module "models": the whole-model pickles
# record the class as models.DigitsMLP / models.DigitsCNN.
from models import DigitsCNN, DigitsMLP  # noqa: E402

assert DigitsMLP.__module__ == "models", DigitsMLP.__module__

SEED = 0
TEST_SIZE = 360
BATCH_SIZE = 64
EPOCHS = 20

HEALTHY_LR = 1e-3
HIGH_LR = 3e-2
CNN_LR = 1e-3

SERIES_BASE_LR = 1e-3
SERIES_SPIKE_FACTOR = 100.0
SERIES_SPIKE_STEPS = (301, 302, 303)  # 1-based optimizer steps run at base_lr * factor
SERIES_CHECKPOINTS = (100, 200, 300, 400, 500)

DATA_DIR = HERE / "data"
SERIES_DIR = HERE / "series"


# --------------------------------------------------------------------------- utils


def seed_everything(seed: int) -> torch.Generator:
    # One intra-op thread: CPU float reductions are split differently for
    # different thread counts, which changes the weights bitwise (and the chaotic
    # high-LR run visibly). One thread is also the fastest setting for these tiny nets.
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (1797 x 64, pixel values 0..16) scaled to [0, 1]; stratified 360-sample test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    return x_tr, x_te, y_tr, y_te


def relu_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward ``x`` once and return the post-ReLU activation of every ReLU site, by name.

    For DigitsCNN the functional ``F.relu`` after ``bn2`` has no module, so it
    is reconstructed as ``relu(bn2 output)`` and named ``F.relu(bn2)``.
    """
    outs: dict[str, torch.Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ReLU):
            handles.append(
                mod.register_forward_hook(
                    lambda m, i, o, name=name: outs.__setitem__(name, o.detach().clone())
                )
            )
    if isinstance(model, DigitsCNN):
        handles.append(
            model.bn2.register_forward_hook(
                lambda m, i, o: outs.__setitem__("F.relu(bn2)", F.relu(o).detach().clone())
            )
        )
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return outs  # hooks fire in forward order, so this is network order


def dead_counts(model: nn.Module, x: torch.Tensor) -> dict[str, list[int]]:
    """Brute force: a unit (neuron, or conv channel) is dead if its ReLU output is 0
    for every sample (and every spatial position). Returns {site: [dead, total]}."""
    was_training = model.training
    model.eval()
    res = {}
    for name, a in relu_outputs(model, x).items():
        # (N, C) or (N, C, H, W) -> (C, everything else); alive if positive anywhere
        alive = (a > 0).transpose(0, 1).reshape(a.shape[1], -1).any(dim=1)
        res[name] = [int((~alive).sum()), int(alive.numel())]
    model.train(was_training)
    return res


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was_training)
    return round(acc, 4)


def all_finite(model: nn.Module) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


def fmt_dead(d: dict[str, list[int]]) -> str:
    return ", ".join(f"{k}: {a}/{b} ({100 * a / b:.0f}%)" for k, (a, b) in d.items())


def train_epochs(model, opt, x, y, epochs, gen):
    model.train()
    n = len(x)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def report(name, model, x_te, y_te, x_all, img=False):
    shape = (lambda t: t.reshape(-1, 1, 8, 8)) if img else (lambda t: t)
    entry = {
        "test_accuracy": accuracy(model, shape(x_te), y_te),
        "finite": all_finite(model),
        "dead_test": dead_counts(model, shape(x_te)),
        "dead_all_1797": dead_counts(model, shape(x_all)),
    }
    print(f"[{name}] test acc {entry['test_accuracy']:.4f}  finite={entry['finite']}")
    print(f"    dead on test split (360): {fmt_dead(entry['dead_test'])}")
    print(f"    dead on all 1797 digits : {fmt_dead(entry['dead_all_1797'])}")
    return entry


# --------------------------------------------------------------------------- data


def write_data(x_te: np.ndarray, y_te: np.ndarray) -> None:
    from PIL import Image

    DATA_DIR.mkdir(exist_ok=True)
    np.save(DATA_DIR / "digits_test.npy", x_te.astype(np.float32))
    np.save(DATA_DIR / "digits_test_labels.npy", y_te.astype(np.int64))
    np.save(DATA_DIR / "digits_test_img.npy", x_te.reshape(-1, 1, 8, 8).astype(np.float32))
    np.savez(DATA_DIR / "digits_test.npz", x=x_te.astype(np.float32), y=y_te.astype(np.int64))

    png_root = DATA_DIR / "digits_png"
    if png_root.exists():
        shutil.rmtree(png_root)
    for c in range(10):
        (png_root / str(c)).mkdir(parents=True)
    # pixel value p in 0..16  ->  round(p * 255 / 16); reading back /255 gives ~ p/16
    pixels = np.round(x_te * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    for idx, (img, label) in enumerate(zip(pixels, y_te, strict=True)):
        Image.fromarray(img).save(png_root / str(int(label)) / f"{idx:03d}.png")


# --------------------------------------------------------------------------- main


def main() -> int:
    t0 = time.time()
    x_tr_np, x_te_np, y_tr_np, y_te_np = load_split()
    x_tr, y_tr = torch.from_numpy(x_tr_np), torch.from_numpy(y_tr_np)
    x_te, y_te = torch.from_numpy(x_te_np), torch.from_numpy(y_te_np)
    x_all = torch.cat([x_tr, x_te])
    print(f"digits: train {tuple(x_tr.shape)}, test {tuple(x_te.shape)}")
    write_data(x_te_np, y_te_np)

    metrics: dict = {
        "seed": SEED,
        "split": {"train": len(x_tr), "test": len(x_te), "stratified": True, "random_state": SEED},
        "dead_definition": "ReLU output == 0 for every sample (and every spatial position for conv channels), model in eval mode",
        "torch_version": torch.__version__,
        "models": {},
    }

    # ---- healthy MLP
    gen = seed_everything(SEED)
    mlp = DigitsMLP()
    train_epochs(mlp, torch.optim.Adam(mlp.parameters(), lr=HEALTHY_LR), x_tr, y_tr, EPOCHS, gen)
    m = report("mlp_healthy", mlp, x_te, y_te, x_all)
    m["train"] = {"optimizer": "Adam", "lr": HEALTHY_LR, "epochs": EPOCHS, "batch_size": BATCH_SIZE}
    metrics["models"]["mlp_healthy"] = m
    torch.save(mlp.state_dict(), HERE / "mlp_healthy.pt")
    torch.save(mlp, HERE / "mlp_healthy_full.pt")
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in mlp.state_dict().items()},
        str(HERE / "mlp_healthy.safetensors"),
        # one key only: safetensors writes metadata from a hash map, so several
        # keys come out in a random order and the file bytes would differ per run
        metadata={"arch": "models.DigitsMLP(hidden=128, depth=3)"},
    )

    # ---- high-LR MLP
    gen = seed_everything(SEED)
    mlp_hi = DigitsMLP()
    opt_hi = torch.optim.Adam(mlp_hi.parameters(), lr=HIGH_LR)
    train_epochs(mlp_hi, opt_hi, x_tr, y_tr, EPOCHS, gen)
    m = report("mlp_high_lr", mlp_hi, x_te, y_te, x_all)
    assert m["finite"], "high-LR checkpoint went non-finite; lower HIGH_LR"
    m["train"] = {"optimizer": "Adam", "lr": HIGH_LR, "epochs": EPOCHS, "batch_size": BATCH_SIZE}
    metrics["models"]["mlp_high_lr"] = m
    torch.save(mlp_hi.state_dict(), HERE / "mlp_high_lr.pt")
    torch.save(mlp_hi, HERE / "mlp_high_lr_full.pt")
    # a training checkpoint as training loops write them: weights, optimizer state, progress
    steps = EPOCHS * -(-len(x_tr) // BATCH_SIZE)
    torch.save({"model": mlp_hi.state_dict(), "optimizer": opt_hi.state_dict(),
                "epoch": EPOCHS, "step": steps}, HERE / "mlp_high_lr_ckpt.pt")

    # ---- CNN
    gen = seed_everything(SEED)
    cnn = DigitsCNN()
    x_tr_img = x_tr.reshape(-1, 1, 8, 8)
    train_epochs(cnn, torch.optim.Adam(cnn.parameters(), lr=CNN_LR), x_tr_img, y_tr, EPOCHS, gen)
    cnn.eval()
    m = report("cnn", cnn, x_te, y_te, x_all, img=True)
    m["train"] = {"optimizer": "Adam", "lr": CNN_LR, "epochs": EPOCHS, "batch_size": BATCH_SIZE}
    metrics["models"]["cnn"] = m
    torch.save(cnn.state_dict(), HERE / "cnn.pt")
    torch.save(cnn, HERE / "cnn_full.pt")

    # ---- series: one run, LR spike right after step 300
    if SERIES_DIR.exists():
        shutil.rmtree(SERIES_DIR)
    SERIES_DIR.mkdir()
    gen = seed_everything(SEED)
    net = DigitsMLP()
    opt = torch.optim.Adam(net.parameters(), lr=SERIES_BASE_LR)
    series = []
    step = 0
    last = max(SERIES_CHECKPOINTS)
    net.train()
    print(
        f"[series] Adam lr={SERIES_BASE_LR}, x{SERIES_SPIKE_FACTOR:g} at steps "
        f"{list(SERIES_SPIKE_STEPS)}, checkpoints {list(SERIES_CHECKPOINTS)}"
    )
    while step < last:
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(x_tr) - BATCH_SIZE + 1, BATCH_SIZE):  # full batches only
            step += 1
            lr = SERIES_BASE_LR * (SERIES_SPIKE_FACTOR if step in SERIES_SPIKE_STEPS else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[i : i + BATCH_SIZE]
            loss = F.cross_entropy(net(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step in SERIES_CHECKPOINTS:
                d = dead_counts(net, x_te)
                dead = sum(a for a, _ in d.values())
                total = sum(b for _, b in d.values())
                entry = {
                    "step": step,
                    "file": f"series/step_{step}.pt",
                    "test_accuracy": accuracy(net, x_te, y_te),
                    "finite": all_finite(net),
                    "dead_test": d,
                    "dead_fraction_test": round(dead / total, 4),
                }
                series.append(entry)
                torch.save(net.state_dict(), SERIES_DIR / f"step_{step}.pt")
                print(
                    f"    step {step}: dead {dead}/{total} = {entry['dead_fraction_test']:.3f}  "
                    f"acc {entry['test_accuracy']:.4f}  ({fmt_dead(d)})"
                )
            if step >= last:
                break
    metrics["series"] = {
        "optimizer": "Adam",
        "base_lr": SERIES_BASE_LR,
        "spike_factor": SERIES_SPIKE_FACTOR,
        "spike_steps": list(SERIES_SPIKE_STEPS),
        "batch_size": BATCH_SIZE,
        "checkpoints": series,
    }

    with open(HERE / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    print(f"done in {time.time() - t0:.1f}s; wrote {HERE / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
