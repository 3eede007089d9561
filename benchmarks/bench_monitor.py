"""Cost of ``deadrelu.Monitor`` on a training step: plain vs sampled vs unsampled.

Run from the repository root: ``python benchmarks/bench_monitor.py [--reps 15]``
(writes ``benchmarks/results/monitor.md``).

A training step is forward + cross-entropy + backward + SGD step (momentum 0.9),
the model in train mode (BatchNorm batch statistics). For each case the three
kinds of step are interleaved, ``--reps`` times, on the same batch:

* **plain**: no monitor attached;
* **sampled**: a monitor with ``every=1`` attached, so the step is recorded;
* **unsampled**: a monitor with a large ``every`` attached, past its first step, so
  the step is not recorded (only the monitor's three root hooks are on the model).

The order of the three kinds is shuffled in every repetition. The ratios of the
medians of wall time are the numbers the issue bounds (sampled ≤ 1.10, unsampled
≈ 1.00); ratios of the minima and of CPU time (process time, all threads) are shown
beside them, as they are less noisy on a shared machine. With several threads on
an oversubscribed machine, CPU time counts threads spinning while they wait for
each other: use ``--threads 1`` there. ``report()`` is timed separately: it runs once
per window, not per step.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402

from deadrelu.monitor import Monitor  # noqa: E402


def _many_small() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(64, 10))


#: name → (model factory, input shape, batch size, what it shows)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "resnet18-cifar (width 32)": (lambda: models.ResNet18(width=32), (3, 32, 32), 64),
    "resnet18-cifar (width 64)": (lambda: models.ResNet18(width=64), (3, 32, 32), 64),
    "mlp 50x64 (101 small modules)": (_many_small, (64,), 64),
}
DEFAULT_CASES = ("resnet18-cifar (width 32)", "mlp 50x64 (101 small modules)")


class _Step:
    def __init__(self, model: nn.Module, shape: tuple[int, ...], batch: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.model = model.train()
        self.x = torch.randn(batch, *shape, generator=gen)
        self.y = torch.randint(0, 10, (batch,), generator=gen)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def __call__(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()
        return time.perf_counter() - wall, time.process_time() - cpu


def time_case(name: str, reps: int) -> dict[str, float]:
    make, shape, batch = CASES[name]
    torch.manual_seed(0)
    step = _Step(make(), shape, batch)
    sampled = Monitor(step.model, every=1, jump=None)
    unsampled = Monitor(step.model, every=10**9, jump=None)
    for monitor in (sampled, unsampled):  # warm-up; the first step of each is sampled
        with monitor:
            step()
    step()
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "sampled": [], "unsampled": []}
    order = list(times)
    rng = random.Random(0)
    for _ in range(reps):
        rng.shuffle(order)  # no kind always runs first (caches, other processes' bursts)
        for kind in order:
            if kind == "plain":
                times[kind].append(step())
                continue
            monitor = sampled if kind == "sampled" else unsampled
            with monitor:
                assert monitor.sampled == (kind == "sampled")
                times[kind].append(step())
    start = time.perf_counter()
    report = sampled.report()
    report_s = time.perf_counter() - start
    out: dict[str, float] = {"report_s": report_s, "sites": len(report.sites)}
    for kind, values in times.items():
        out[f"{kind}_wall"] = statistics.median(w for w, _ in values)
        out[f"{kind}_cpu"] = statistics.median(c for _, c in values)
        out[f"{kind}_min"] = min(w for w, _ in values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, nargs="*", default=[torch.get_num_threads()],
                        help="torch thread counts to run, one table each")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "monitor.md")
    args = parser.parse_args()

    lines = [
        f"# Monitor overhead per training step ({platform.machine()}, torch {torch.__version__})",
        "",
        f"Median of {args.reps} repetitions, the order of plain / sampled / unsampled shuffled in "
        "each; a step is forward + loss + backward + SGD step in train mode. Ratios are to the "
        "plain step. Run: `python benchmarks/bench_monitor.py --threads "
        f"{' '.join(map(str, args.threads))} --reps {args.reps}`.",
    ]
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines += [
            "",
            f"## {threads} thread{'s' if threads > 1 else ''}",
            "",
            "| model | sites | plain (ms) | sampled (ms) | sampled ratio | unsampled ratio "
            "| sampled / unsampled ratio (min) | sampled / unsampled ratio (CPU time) "
            "| report() (ms) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name in args.cases:
            r = time_case(name, args.reps)
            row = (
                f"| {name} | {int(r['sites'])} | {r['plain_wall'] * 1e3:.1f} "
                f"| {r['sampled_wall'] * 1e3:.1f} | {r['sampled_wall'] / r['plain_wall']:.3f} "
                f"| {r['unsampled_wall'] / r['plain_wall']:.3f} "
                f"| {r['sampled_min'] / r['plain_min']:.3f} / {r['unsampled_min'] / r['plain_min']:.3f} "
                f"| {r['sampled_cpu'] / r['plain_cpu']:.3f} / {r['unsampled_cpu'] / r['plain_cpu']:.3f} "
                f"| {r['report_s'] * 1e3:.1f} |"
            )
            print(f"{threads} threads: {row}", flush=True)
            lines.append(row)
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
