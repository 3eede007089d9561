"""Cost of the safety checks on files: weights fingerprint and report validation.

Run from the repository root: ``python benchmarks/bench_report_io.py [--reps 3]``.

* **fingerprint**: :func:`deadrelu.identity.weights_fingerprint` (SHA-256 over the
  exact bytes of every parameter and buffer) next to the float reductions it
  replaced (a sum and a dot product per tensor, which depended on the thread count),
  for a 100M-parameter float32 model.
* **validate**: reading back a large report (30 layers × 11008 units, the shape of
  a 7B-parameter LLM's MLP activations): ``json.loads`` next to the schema check
  that ``Report.from_dict`` runs on it.

Prints medians in seconds. Numbers in the docs were taken on a shared, loaded
2-core machine: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _median(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _float_reductions(model: nn.Module) -> None:
    """What the fingerprint used to cost: two reductions per floating tensor."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point() and t.numel():
                flat = t.reshape(-1)
                torch.stack([flat.sum(), torch.dot(flat, flat)]).tolist()


def _big_report() -> dict[str, Any]:
    units = 11008
    layers = []
    for i in range(30):
        site = {"name": f"layers.{i}.mlp.act", "order": i, "kind": "relu", "op": "module",
                "module": f"layers.{i}.mlp.act", "call_index": 0, "input_layer": None,
                "input_direct": False, "unit_axis": 2, "sample_axis": 0, "shape": [16, units],
                "units": units, "level": 0.0, "sat_low": None, "sat_high": None,
                "can_die": True, "nonneg": True}
        counters: dict[str, Any] = {"units": units, "positions": 4096, "samples": 256}
        for name in ("active", "sample_active", "saturated", "nonfinite"):
            counters[name] = [17] * units
        for name in ("sum", "abs_sum", "max"):
            counters[name] = [0.25] * units
        layers.append({"site": site, "counters": counters})
    return {"schema_version": 1, "layers": layers}


def main() -> None:
    from deadrelu.identity import weights_fingerprint
    from deadrelu.schemas import validate

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    model = nn.Sequential(nn.Linear(4096, 4096 * 6), nn.ReLU(), nn.Linear(4096 * 6, 64))
    params = sum(p.numel() for p in model.parameters())
    print(f"fingerprint, {params / 1e6:.0f}M float32 parameters")
    print(f"  sha256 of bytes   {_median(lambda: weights_fingerprint(model), reps):.3f} s")
    print(f"  float reductions  {_median(lambda: _float_reductions(model), reps):.3f} s")
    text = json.dumps(_big_report())
    data = json.loads(text)
    print(f"report of 30 x 11008 units ({len(text) / 1e6:.0f} MB of JSON)")
    print(f"  json.loads        {_median(lambda: json.loads(text), reps):.3f} s")
    print(f"  schema validation {_median(lambda: validate(data, 'report'), reps):.3f} s")


if __name__ == "__main__":
    main()
