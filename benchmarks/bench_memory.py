"""Peak memory of a scan: flat in the data's size, and per site no more than its counters.

Run: ``python benchmarks/bench_memory.py`` (writes benchmarks/results/memory.md).

Each measurement is a fresh subprocess (peak RSS, ``ru_maxrss``, only grows within a
process) that builds a stack of ``K`` blocks of ``Linear(512, 512)`` + ``ReLU`` and runs
either a plain loop of forwards over the data or ``deadrelu.scan`` of the same data
(generated batch by batch, 256 samples each, so the data itself never sits in memory).
Both children import deadrelu and its report modules and run two plain forwards first,
as a process that trained or evaluated the model before scanning it has, and report how
far the peak grows past that point: what scanning holds, not what importing costs. (In a
process whose first forward is the scan's, the heap is still growing anyway and the
allocator hides part of what the scan adds.)

* **Sites**: K = 4, 16 and 64 at the same data size. The scan's extra peak over the
  plain loop may hold a fixed part (imports done lazily, the kernel's per-thread
  buffers, the report); what it must not hold is more per site than the site's
  counters (seven float64 vectors of 512 units, 28 KiB). The table gives the extra
  peak per added site against that.
* **Data size**: K = 16 over 1,000 and 20,000 samples: the same peak.
* **The first forward**: a collector's first forward over a batch the model has just run
  on (4 batches held in a list, as a dataset in memory), K = 4 and 64: how far the peak
  grows past the plain forwards'. That forward discovers the sites and makes their
  counters between activations that are allocated and freed (see
  ``deadrelu.stats.CounterArena``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

WIDTH = 512
BATCH = 256


def _stack(sites: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(sites):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def _first_forward_child(sites: int) -> None:
    from deadrelu.collector import Collector

    model = _stack(sites)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(BATCH, WIDTH, generator=gen) for _ in range(4)]
    with torch.no_grad():
        for batch in batches:
            model(batch)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with Collector(model):
            model(batches[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"maxrss_mb": peak, "growth_mb": peak - before}))


def _child(sites: int, samples: int, scan: bool) -> None:
    import deadrelu
    import deadrelu.assemble  # noqa: F401  (the report's modules, imported by both children)
    import deadrelu.diagnose  # noqa: F401

    model = _stack(sites)

    def data():
        g = torch.Generator().manual_seed(1)
        for start in range(0, samples, BATCH):
            yield torch.randn(min(BATCH, samples - start), WIDTH, generator=g)

    with torch.no_grad():  # the model has run before, as in a training or eval script
        for batch in itertools.islice(data(), 2):
            model(batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if scan:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            deadrelu.scan(model, data(), batch_size=BATCH)
    else:
        with torch.no_grad():
            for batch in data():
                model(batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"maxrss_mb": peak, "growth_mb": peak - before}))


def peak(sites: int, samples: int, scan: bool) -> tuple[float, float]:
    """(peak RSS, its growth past the warm-up) in MB of a subprocess doing one plain loop
    or one scan."""
    out = subprocess.run([sys.executable, __file__, "--child", str(sites), str(samples),
                          "scan" if scan else "plain"], check=True, capture_output=True, text=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return float(found["maxrss_mb"]), float(found["growth_mb"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--out", default="memory.md")
    args = ap.parse_args()
    if args.child:
        if args.child[2] == "first":
            _first_forward_child(int(args.child[0]))
        else:
            _child(int(args.child[0]), int(args.child[1]), args.child[2] == "scan")
        return
    counters_mb = 7 * WIDTH * 8 / 2**20
    lines = [f"# Peak memory of a scan ({platform.machine()}, torch {torch.__version__})", "",
             f"Stacks of K × (Linear({WIDTH}, {WIDTH}) + ReLU), batches of {BATCH} generated one "
             "by one; peak RSS of a fresh process per cell.", "",
             "| sites K | samples | peak, plain loop (MB) | peak, scan (MB) | growth past the "
             "warm-up, plain loop (MB) | growth, scan (MB) |",
             "|--:|--:|--:|--:|--:|--:|"]
    extra = {}
    for sites, samples in ((4, 5000), (16, 5000), (64, 5000), (16, 1000), (16, 20000)):
        (plain, grew), (scanned, scan_grew) = peak(sites, samples, False), peak(sites, samples, True)
        extra[(sites, samples)] = scan_grew - grew
        lines.append(f"| {sites} | {samples} | {plain:.0f} | {scanned:.0f} | {grew:.1f} | "
                     f"{scan_grew:.1f} |")
        print(lines[-1], flush=True)
    per_site = (extra[(64, 5000)] - extra[(4, 5000)]) / 60
    lines += ["", f"A scan's growth past the plain loop's, per added site (K = 4 → 64): "
              f"{per_site * 1024:.0f} KiB; a site's counters: {counters_mb * 1024:.0f} KiB. At "
              f"1,000 / 20,000 samples (K = 16): {extra[(16, 1000)]:.1f} / "
              f"{extra[(16, 20000)]:.1f} MB."]
    lines += ["", "| sites K | first forward: growth past the plain forwards (MB) | "
              "the activations of K sites (MB) |", "|--:|--:|--:|"]
    for sites in (4, 64):
        out = subprocess.run([sys.executable, __file__, "--child", str(sites), "0", "first"],
                             check=True, capture_output=True, text=True)
        grew = json.loads(out.stdout.strip().splitlines()[-1])["growth_mb"]
        lines.append(f"| {sites} | {grew:.1f} | {sites * BATCH * WIDTH * 4 / 2**20:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results" / args.out).write_text(text)


if __name__ == "__main__":
    main()
