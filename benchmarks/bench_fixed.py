"""The fixed costs of one ``deadrelu.scan`` of 8 batches, part by part.

Run: ``python benchmarks/bench_fixed.py [--reps 3] [--only NAME ...] [--threads 1]
[--ignore-load] [--compare]`` (prints).
Times the whole scan against the same 8 plain forwards, and inside the scan the parts of
building the report (:func:`deadrelu.assemble.assemble_report`): reading the weights
(fingerprint and NaN/Inf check), the architecture signature, the weight evidence and the
diagnosis. Each line is the repetition with the median ratio. The models are those of
``bench_floor.py``. Run it with ``PYTHONPATH`` pointing at another checkout to compare.

``weights`` is the read of the weights at the end of the scan. Where a scan hashes them
on a background thread during its forwards (:func:`deadrelu.identity.start_reading`), it
is 0, ``weights wait`` is what the scan still spends on them at the end (joining the
thread, checking that the weights did not change, the NaN/Inf check) and ``hash behind``
the background hash's own duration, hidden behind the forwards. A scan reads them at the
end when no core is spare (``identity.spare_core``): with as many torch threads as CPUs
(``--threads``, 1 by default) or on a machine busy with other work (its load average);
``--ignore-load`` hashes in the background whatever the load, to measure that on a shared
machine. ``--compare`` times instead, in one process, the same scan hashing behind its
forwards and at its end, alternating (medians over ``--reps``; ratios to the plain forwards
of each repetition): the steadier measure of what the background hash saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_floor  # noqa: E402

import deadrelu  # noqa: E402
from deadrelu import assemble, identity  # noqa: E402

PARTS = {"read_weights": "weights", "model_signature": "signature",
         "collect_evidence": "evidence", "diagnosed": "diagnosis"}
TIMES: dict[str, float] = {}


def _timed(name: str, key: str) -> None:
    inner: Callable[..., Any] = getattr(assemble, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            TIMES[key] = TIMES.get(key, 0.0) + time.perf_counter() - start

    setattr(assemble, name, wrapper)


def _timed_wait() -> None:
    """Time the end of a scan's read of the weights: the whole read where it reads them there,
    else the wait for the background hash and the check after it (and the hash's own time)."""
    pending = getattr(identity, "PendingWeights", None)
    if pending is None:  # a checkout without background reads
        return
    inner = pending.result

    def result(self: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(self)
        finally:
            key = "weights wait" if self.background else "weights"
            TIMES[key] = TIMES.get(key, 0.0) + time.perf_counter() - start
            if self.background:
                TIMES["hash behind"] = TIMES.get("hash behind", 0.0) + self.seconds

    pending.result = result


def _warm(name: str) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """The model of ``bench_floor``'s case ``name`` and its 8 batches, scanned once."""
    make, batch = bench_floor.CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    gen = torch.Generator().manual_seed(1)
    batches = [batch(gen) for _ in range(8)]
    deadrelu.scan(model, batches, batch_size=len(batches[0]))  # warm-up
    return model, batches


def compare(name: str, reps: int) -> None:
    """The same scan hashing the weights behind its forwards and at its end, alternating."""
    model, batches = _warm(name)
    at_end = 1 << 62  # BACKGROUND_MIN_BYTES that no model reaches
    times: dict[str, list[float]] = {"plain": [], "behind": [], "end": []}
    for rep in range(reps):
        for kind in ("plain", *(("behind", "end") if rep % 2 == 0 else ("end", "behind"))):
            identity.BACKGROUND_MIN_BYTES = 4 << 20 if kind == "behind" else at_end
            start = time.perf_counter()
            if kind == "plain":
                with torch.no_grad():
                    for b in batches:
                        model(b)
            else:
                deadrelu.scan(model, batches, batch_size=len(batches[0]))
            times[kind].append(time.perf_counter() - start)
    ratio = {k: statistics.median(t / p for t, p in zip(times[k], times["plain"], strict=True))
             for k in ("behind", "end")}
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{name}: plain {med['plain']:.0f} ms; whole scan hashing behind {ratio['behind']:.3f} "
          f"({med['behind']:.0f} ms), at the end {ratio['end']:.3f} ({med['end']:.0f} ms); "
          f"behind - end {med['behind'] - med['end']:+.0f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ignore-load", action="store_true")
    ap.add_argument("--compare", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if (args.ignore_load or args.compare) and hasattr(identity, "_load"):
        identity._load = lambda: 0.0
    warnings.simplefilter("ignore")
    if args.compare:
        for name in args.only or bench_floor.DEFAULT:
            compare(name, args.reps)
        return
    for name, key in PARTS.items():
        _timed(name, key)
    _timed_wait()
    for name in args.only or bench_floor.DEFAULT:
        model, batches = _warm(name)
        rows = []
        for _ in range(args.reps):
            TIMES.clear()
            TIMES["weights"] = 0.0
            start = time.perf_counter()
            with torch.no_grad():
                for b in batches:
                    model(b)
            plain = time.perf_counter() - start
            start = time.perf_counter()
            deadrelu.scan(model, batches, batch_size=len(batches[0]))
            scan = time.perf_counter() - start
            rows.append((scan / plain, plain, scan, dict(TIMES)))
        rows.sort(key=lambda r: r[0])
        ratio, plain, scan, parts = rows[len(rows) // 2]
        print(f"{name}: ratio {ratio:.3f}, plain {plain * 1e3:.0f} ms, scan {scan * 1e3:.0f} ms; "
              + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in parts.items()), flush=True)


if __name__ == "__main__":
    main()
