"""The fused CPU kernel against the eager statistics, activation by activation.

Run: ``python benchmarks/bench_kernel.py [--reps 101] [--threads 1]`` (writes
benchmarks/results/kernel.md). ``--library PATH`` loads another build of the kernel
instead (e.g. one compiled from an older ``stats.cpp``, to compare two versions run after
run; the output then goes to kernel-other.md).

For each activation shape of the benchmark models (ResNet-18 stages on 64 CIFAR
images, the MLP's hidden layer at batch 256, the Transformer's feed-forward layer at
batch 32) it times, right after the input was written (``x.copy_(source)``, as a
layer's output is just before its ReLU):

* ``relu``: ``torch.relu_(x)`` alone, what a plain forward does;
* ``eager``: the ReLU, then :meth:`UnitStats.update` on the eager path;
* ``kernel stats``: the ReLU, then the kernel's one-pass statistics;
* ``fused``: the kernel computing the ReLU and its statistics together, as the
  collector does for a known ReLU site.

Recording cost = (variant - relu): what the scan adds to the forward for that
activation. Medians of interleaved repetitions.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from deadrelu import native
from deadrelu.collector import _layout
from deadrelu.stats import UnitStats, scratch_size

SHAPES = [  # (label, shape, unit axis)
    ("ResNet stage 1 (64, 64, 32, 32)", (64, 64, 32, 32), 1),
    ("ResNet stage 2 (64, 128, 16, 16)", (64, 128, 16, 16), 1),
    ("ResNet stage 3 (64, 256, 8, 8)", (64, 256, 8, 8), 1),
    ("ResNet stage 4 (64, 512, 4, 4)", (64, 512, 4, 4), 1),
    ("ResNet-50 64px stage 3 (16, 1024, 4, 4)", (16, 1024, 4, 4), 1),
    ("ResNet-50 64px stage 4 (16, 2048, 2, 2)", (16, 2048, 2, 2), 1),
    ("deep stage (32, 2048, 2, 2)", (32, 2048, 2, 2), 1),
    ("3x3 maps (32, 512, 3, 3)", (32, 512, 3, 3), 1),
    ("5x5 maps (32, 512, 5, 5)", (32, 512, 5, 5), 1),
    ("MLP hidden (256, 1024)", (256, 1024), 1),
    ("Transformer FFN (32, 64, 1024)", (32, 64, 1024), 2),
]


def _time(setup: Callable[[], object], fn: Callable[[], object]) -> float:
    setup()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(shape: tuple[int, ...], unit_axis: int, reps: int) -> dict[str, float]:
    source = torch.randn(shape)
    x = torch.empty_like(source)
    x3, rd = _layout(x, unit_axis, 0)
    stats = UnitStats.zeros(x3.shape[3 - rd])
    scratch = torch.empty(scratch_size(x3))

    def refresh() -> None:
        x.copy_(source)

    def eager() -> None:
        torch.relu_(x)
        with native.disabled():
            stats.update(x3, rd, 0.0, None, None, True, scratch)

    def kernel_stats() -> None:
        torch.relu_(x)
        stats.update(x3, rd, 0.0, None, None, True, scratch)

    variants = {"relu": lambda: torch.relu_(x), "eager": eager, "kernel stats": kernel_stats,
                "fused": lambda: stats.relu_(x3, x3, rd)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            times[name].append(_time(refresh, fn))
    return {k: statistics.median(v) * 1e6 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=101)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--library", help="a built kernel library to load instead of this source's")
    args = ap.parse_args()
    reps = args.reps
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.library:
        torch.ops.load_library(args.library)
        native._ops = torch.ops.deadrelu_native
    elif not native.available():
        raise SystemExit(f"the fused kernel is not available here: {native.reason()}")
    lines = [
        f"# Fused kernel vs eager statistics ({platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, median of {reps})", "",
        "| activation | ReLU (µs) | + eager statistics | + kernel statistics | fused ReLU + statistics |",
        "|---|--:|--:|--:|--:|",
    ]
    for label, shape, axis in SHAPES:
        t = measure(shape, axis, reps)
        extra = {k: t[k] - t["relu"] for k in ("eager", "kernel stats", "fused")}
        cells = " | ".join(f"+{extra[k]:.0f} ({t[k] / t['relu']:.1f}×)"
                           for k in ("eager", "kernel stats", "fused"))
        lines.append(f"| {label} | {t['relu']:.0f} | {cells} |")
    lines += ["", "Columns after the first: microseconds the scan adds to the forward for "
              "that activation (variant − ReLU); in brackets, the variant's time in ReLUs."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / ("kernel-other.md" if args.library else "kernel.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
