"""Size and build time of the HTML report for big models.

Run from the repository root: ``python benchmarks/bench_html.py`` (writes
``benchmarks/results/html.md``). Models are built in plain torch
(``tests/deep_models.py``: a ResNet-50 layout, 49 ReLU sites and 22,720 channels;
a 120-layer MLP), scanned on a few random inputs, and rendered with
:func:`deadrelu.html.report_page`. The target is a page under 1 MB for a
ResNet-50-size model. Times are wall-clock on whatever machine runs this (the
committed numbers come from a shared, loaded 2-core machine: treat them as rough).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deep_models import deep_mlp, resnet50_like  # noqa: E402

import deadrelu  # noqa: E402
from deadrelu.html import report_page  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    cases = [
        ("ResNet-50 layout, 4 images 64x64", resnet50_like(), torch.randn(4, 3, 64, 64)),
        ("MLP, 120 ReLU layers x 32 units, 200 samples", deep_mlp(120), torch.randn(200, 32)),
        ("MLP, 12 ReLU layers x 4096 units, 64 samples", deep_mlp(12, 4096, dead_every=3),
         torch.randn(64, 4096)),
    ]
    lines = ["| model | sites | units | findings | page size | build time |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, model, data in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = deadrelu.scan(model, data)
        start = time.perf_counter()
        page = report_page(report)
        seconds = time.perf_counter() - start
        size = len(page.encode())
        units = sum(s.info.units for s in report.sites)
        lines.append(f"| {name} | {len(report.sites)} | {units:,} | {len(report.findings)} | "
                     f"{size / 1e6:.2f} MB | {seconds:.2f} s |")
        print(lines[-1], flush=True)
    out = ROOT / "benchmarks/results/html.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("# HTML report size\n\n" + "\n".join(lines) + "\n\n"
                   "Measured with `python benchmarks/bench_html.py` on a shared, loaded 2-core "
                   "CPU machine (build times are rough).\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
