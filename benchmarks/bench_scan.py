"""Scan cost vs plain forward passes, and peak memory vs number of samples.

Run: ``python benchmarks/bench_scan.py`` (writes benchmarks/results/scan.md, or ``--out NAME``).

Two timings per model, each the ratio of medians over ``--reps`` interleaved runs:

* **recording**: one forward of one batch with the collector attached vs the
  same forward with nothing attached (eval, ``no_grad``): the steady-state cost
  of recording, which is what grows with the data set. Measured as the median
  of ``--pairs`` back-to-back (plain, recorded) pairs in alternating order, which
  cancels the slow drift this shared 2-core VM shows (±20% between runs).
* **end to end**: ``deadrelu.scan`` over all batches vs a plain loop of the same
  forward passes. This adds scan()'s one-off costs (weights fingerprint, weight
  evidence, diagnosis, building the report), which do not grow with the data.

For the Transformer both are also given against a plain forward with PyTorch's
fused encoder fast path disabled: any observer of the feed-forward activation
disables it (the fused kernel never materialises that tensor).

Recording is measured with deadrelu's fused CPU kernel (``deadrelu.native``, built
first if needed) and, for comparison, with the eager statistics it replaces.

PReLU networks (``mlp-prelu-6x1024``, ``prelu-cnn``) read firing from the activation's
input, a second pass over each activation that the fused ReLU kernel does not do.

Memory (skip with ``--no-memory``): peak RSS of a subprocess scanning 1k and 20k samples (data generated
batch by batch, so only deadrelu's own memory could grow).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402

import deadrelu  # noqa: E402
from deadrelu import native  # noqa: E402
from deadrelu.collector import Collector  # noqa: E402

CASES = {
    "resnet18-cifar": (lambda: models.ResNet18(), (3, 32, 32), 64, 256),
    "mlp-6x1024": (lambda: models.mlp(), (784,), 256, 8192),
    "transformer-4x256": (lambda: models.transformer(), (64, 256), 32, 256),
    # PReLU: firing is read from the input (a second pass), never the fused ReLU kernel
    "mlp-prelu-6x1024": (lambda: models.mlp(act=torch.nn.PReLU), (784,), 256, 8192),
    "prelu-cnn": (lambda: models.prelu_cnn(), (3, 32, 32), 64, 256),
}


def _plain(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            model(b)
    return time.perf_counter() - start


def _scan(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deadrelu.scan(model, batches)
    return time.perf_counter() - start


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def _paired_ratio(model: torch.nn.Module, batch: torch.Tensor, pairs: int,
                  setup_a, setup_b) -> float:
    """Median over ``pairs`` of time(B)/time(A) for back-to-back forwards: robust to drift."""
    ratios = []
    with torch.no_grad():
        for i in range(pairs):
            times = {}
            for label, setup in (("a", setup_a), ("b", setup_b)) if i % 2 else (("b", setup_b), ("a", setup_a)):
                with setup():
                    start = time.perf_counter()
                    model(batch)
                    times[label] = time.perf_counter() - start
            ratios.append(times["b"] / times["a"])
    return statistics.median(ratios)


def time_case(name: str, reps: int, pairs: int) -> dict:
    make, shape, bs, n = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    batches = [torch.randn(bs, *shape) for _ in range(n // bs)]
    collector = Collector(model)

    @contextmanager
    def nothing():
        yield

    @contextmanager
    def unfused():
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            yield
        finally:
            torch.backends.mha.set_fastpath_enabled(True)

    @contextmanager
    def eager():
        with native.disabled(), collector:
            yield

    _plain(model, batches[:1])
    _scan(model, batches[:1])
    row = {"model": name, "samples": n, "batch": bs,
           "recording": _paired_ratio(model, batches[0], pairs, nothing, lambda: collector),
           "recording_eager": _paired_ratio(model, batches[0], pairs, nothing, eager)}
    if name.startswith("transformer"):
        row["recording_vs_unfused"] = _paired_ratio(model, batches[0], pairs, unfused, lambda: collector)
        row["fastpath_cost"] = _paired_ratio(model, batches[0], pairs, nothing, unfused)
    plain, scan = [], []
    for _ in range(reps):
        plain.append(_plain(model, batches))
        scan.append(_scan(model, batches))
    row.update(plain_s=statistics.median(plain), scan_s=statistics.median(scan),
               end_to_end=_ratio(scan, plain))
    return row


def _memory_child(name: str, samples: int) -> None:
    make, shape, bs, _ = CASES[name]
    torch.manual_seed(0)
    model = make().eval()

    def data():
        g = torch.Generator().manual_seed(1)
        for start in range(0, samples, bs):
            yield torch.randn(min(bs, samples - start), *shape, generator=g)

    deadrelu.scan(model, data())
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory_case(name: str, samples: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-child", name, str(samples)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="end-to-end repetitions")
    ap.add_argument("--pairs", type=int, default=41, help="paired forwards for the recording ratio")
    ap.add_argument("--memory-child", nargs=2)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--note", default="", help="a line to add under the table (e.g. machine load)")
    ap.add_argument("--out", default="scan.md", help="file name under benchmarks/results/")
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    if not native.available():
        print(f"note: {native.reason()}; the fused kernel's numbers equal the eager ones")
    rows = [time_case(n, args.reps, args.pairs) for n in (args.only or CASES)]
    mem = ([] if args.no_memory else
           [(n, memory_case(n, 1000), memory_case(n, 20000)) for n in ("mlp-6x1024",)])
    lines = [
        f"# Scan overhead ({platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.reps} interleaved repetitions)", "",
        "| model | samples | batch | plain loop (s) | deadrelu.scan (s) | recording, per batch | "
        "recording, eager statistics | end to end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['samples']} | {r['batch']} | {r['plain_s']:.3f} | "
                     f"{r['scan_s']:.3f} | {r['recording']:.3f} | {r['recording_eager']:.3f} | "
                     f"{r['end_to_end']:.3f} |")
    for r in rows:
        if "fastpath_cost" in r:
            lines += ["", f"{r['model']}: PyTorch's fused encoder fast path makes the plain forward "
                      f"{r['fastpath_cost']:.3f}x faster than the unfused path; against the unfused "
                      f"path, recording costs {r['recording_vs_unfused']:.3f}x."]
    if args.note:
        lines += ["", args.note]
    if mem:
        lines += ["", "| model | peak RSS, 1k samples (MB) | peak RSS, 20k samples (MB) |",
                  "|---|---|---|"]
    for name, small, large in mem:
        lines.append(f"| {name} | {small:.0f} | {large:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    (Path(__file__).parent / "results" / args.out).write_text(text)


if __name__ == "__main__":
    main()
