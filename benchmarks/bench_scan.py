"""Scan cost vs plain forward passes, and peak memory vs number of samples.

Run: ``python benchmarks/bench_scan.py`` (writes benchmarks/results/scan.md).
Timing: for each model, the same batches are run (a) through the model with
nothing attached (eval, no_grad) and (b) through ``deadrelu.scan``, alternating,
``--reps`` times; the ratio of medians is reported. Memory: peak RSS of a
subprocess scanning 1k and 20k samples (data generated batch by batch, so only
deadrelu's own memory could grow).
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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402

import deadrelu  # noqa: E402

CASES = {
    "resnet18-cifar": (lambda: models.ResNet18(), (3, 32, 32), 64, 256),
    "mlp-6x1024": (lambda: models.mlp(), (784,), 256, 4096),
    "transformer-4x256": (lambda: models.transformer(), (64, 256), 32, 256),
}


def _plain(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            model(b)
    return time.perf_counter() - start


def _scan(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    deadrelu.scan(model, batches)
    return time.perf_counter() - start


def time_case(name: str, reps: int) -> dict:
    make, shape, bs, n = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    batches = [torch.randn(bs, *shape) for _ in range(n // bs)]
    _plain(model, batches[:1])
    _scan(model, batches[:1])
    plain, scan = [], []
    for _ in range(reps):
        plain.append(_plain(model, batches))
        scan.append(_scan(model, batches))
    p, s = statistics.median(plain), statistics.median(scan)
    return {"model": name, "samples": n, "batch": bs, "plain_s": p, "scan_s": s, "ratio": s / p}


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
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory-child", nargs=2)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child[0], int(args.memory_child[1]))
        return
    rows = [time_case(n, args.reps) for n in (args.only or CASES)]
    mem = [(n, memory_case(n, 1000), memory_case(n, 20000)) for n in ("mlp-6x1024",)]
    lines = [
        f"# Scan overhead ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
        "| model | samples | batch | plain forward (s) | deadrelu.scan (s) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['samples']} | {r['batch']} | {r['plain_s']:.3f} | "
                     f"{r['scan_s']:.3f} | {r['ratio']:.3f} |")
    lines += ["", "| model | peak RSS, 1k samples (MB) | peak RSS, 20k samples (MB) |", "|---|---|---|"]
    for name, small, large in mem:
        lines.append(f"| {name} | {small:.0f} | {large:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    (Path(__file__).parent / "results" / "scan.md").write_text(text)


if __name__ == "__main__":
    main()
