"""Does ReDo recycling (``deadrelu.recycle``) help the too-high-learning-rate digits MLP?

Run from the repository root: ``python benchmarks/bench_recycle.py [--seeds 5] [--every 50]``
(writes ``benchmarks/results/recycle.md``, ``benchmarks/results/recycle.json`` and, with
matplotlib, ``docs/images/recycle_digits.png``).

The setting is ``sample_models/train.py``'s ``mlp_high_lr``: ``DigitsMLP`` (3 × 128 ReLU
units), Adam at lr 3e-2, batch 64, 20 epochs over the 1,437 training digits, one CPU
thread. Each seed trains it twice from the same initial weights and batch order:

* **baseline**: as in ``train.py``;
* **recycle**: the same, under ``deadrelu.Monitor(model, every=1, recycle=True,
  optimizer=opt)`` with a report every ``--every`` steps: the units that never fired in
  that window (train mode) are recycled (incoming weights re-drawn, outgoing weights
  and Adam moments zeroed).

Every 10 steps, both runs measure the dead fraction by brute force on all training
digits in eval mode (a unit is dead if its ReLU output is 0 on every digit), and at
the end the test accuracy. The numbers are what this run measured; nothing is tuned.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_models"))
sys.path.insert(0, str(ROOT))
import train  # noqa: E402  (sample_models/train.py: data split and helpers)
from models import DigitsMLP  # noqa: E402

import deadrelu  # noqa: E402

LR = train.HIGH_LR
EPOCHS = train.EPOCHS
MEASURE_EVERY = 10


def dead_fraction(model: torch.nn.Module, x: torch.Tensor) -> float:
    counts = train.dead_counts(model, x)
    return sum(d for d, _ in counts.values()) / sum(n for _, n in counts.values())


def run(seed: int, recycle: bool, every: int, data: tuple) -> dict:
    x_tr, x_te, y_tr, y_te = data
    gen = train.seed_everything(seed)
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    curve: list[tuple[int, float]] = []
    monitor = deadrelu.Monitor(model, every=1, recycle=True, optimizer=opt, jump=None) if recycle else None
    step = 0
    recycled = 0
    if monitor is not None:
        monitor.attach()
    try:
        for _ in range(EPOCHS):
            model.train()
            perm = torch.randperm(len(x_tr), generator=gen)
            for i in range(0, len(x_tr), train.BATCH_SIZE):
                idx = perm[i:i + train.BATCH_SIZE]
                loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if monitor is not None and step % every == 0:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        monitor.report()
                    recycled += monitor.recycled[-1][1].units_recycled
                if step % MEASURE_EVERY == 0:
                    curve.append((step, dead_fraction(model, x_tr)))
    finally:
        if monitor is not None:
            monitor.detach()
    return {"seed": seed, "recycle": recycle, "steps": step, "curve": curve,
            "final_dead_fraction": dead_fraction(model, x_tr),
            "test_accuracy": train.accuracy(model, x_te, y_te), "units_recycled": recycled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every", type=int, default=50, help="steps between recycling reports")
    args = parser.parse_args()
    x_tr, x_te, y_tr, y_te = train.load_split()
    data = (torch.from_numpy(x_tr), torch.from_numpy(x_te), torch.from_numpy(y_tr), torch.from_numpy(y_te))
    runs = []
    for seed in range(args.seeds):
        for recycle in (False, True):
            r = run(seed, recycle, args.every, data)
            runs.append(r)
            print(f"seed {seed} {'recycle ' if recycle else 'baseline'}: dead {r['final_dead_fraction']:.1%}"
                  f"  test acc {r['test_accuracy']:.4f}  recycled {r['units_recycled']}", flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "recycle.json").write_text(json.dumps({"lr": LR, "epochs": EPOCHS, "every": args.every,
                                                  "runs": runs}, indent=1))
    lines = [f"# ReDo recycling on the high-LR digits MLP ({args.seeds} seeds, report/recycle every "
             f"{args.every} steps)", "",
             f"torch {torch.__version__}, one CPU thread, Adam lr {LR}, {EPOCHS} epochs; "
             "`python benchmarks/bench_recycle.py`", "",
             "| run | final dead fraction (mean, min–max) | test accuracy (mean, min–max) | units recycled (mean) |",
             "|---|---|---|---|"]
    for recycle in (False, True):
        rs = [r for r in runs if r["recycle"] == recycle]
        dead = [r["final_dead_fraction"] for r in rs]
        acc = [r["test_accuracy"] for r in rs]
        rec = [r["units_recycled"] for r in rs]
        lines.append(f"| {'recycle' if recycle else 'baseline'} | {statistics.mean(dead):.1%} "
                     f"({min(dead):.1%}–{max(dead):.1%}) | {statistics.mean(acc):.4f} "
                     f"({min(acc):.4f}–{max(acc):.4f}) | {statistics.mean(rec):.0f} |")
    lines += ["", "Per seed:", "", "| seed | baseline dead | recycle dead | baseline acc | recycle acc |",
              "|---|---|---|---|---|"]
    for seed in range(args.seeds):
        b, r = (next(x for x in runs if x["seed"] == seed and x["recycle"] == flag) for flag in (False, True))
        lines.append(f"| {seed} | {b['final_dead_fraction']:.1%} | {r['final_dead_fraction']:.1%} | "
                     f"{b['test_accuracy']:.4f} | {r['test_accuracy']:.4f} |")
    (out / "recycle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for r in runs:
        steps, dead = zip(*r["curve"], strict=True)
        ax.plot(steps, [100 * d for d in dead], color="tab:green" if r["recycle"] else "tab:red",
                alpha=0.6, lw=1)
    ax.plot([], [], color="tab:red", label="baseline (Adam lr 3e-2)")
    ax.plot([], [], color="tab:green", label=f"deadrelu.recycle every {args.every} steps")
    ax.set_xlabel("training step")
    ax.set_ylabel("dead units (% of 384, train set)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "images" / "recycle_digits.png", dpi=110)


if __name__ == "__main__":
    main()
