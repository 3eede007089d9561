"""Recording cost against its floor and a hand-written peer, model by model, in one run.

Run: ``python benchmarks/bench_floor.py [--reps 11] [--scan-reps 3] [--only NAME ...]``
(writes benchmarks/results/floor.md). One thread (``--threads``), eval mode, ``no_grad``.

For every model, each repetition runs one forward of the same batch under every variant,
in an order shuffled per repetition, and divides each variant's time by the plain
forward's time *of the same repetition*; the table gives min / median / max of those
ratios over the repetitions:

* **plain**: nothing attached (for the Transformer: PyTorch's fused fast path);
* **unfused** (Transformer only): the fast path turned off, which any observer of the
  feed-forward activation forces (see docs/performance.md);
* **floor**: one forward hook per activation call doing ``out.sum()``, one read of each
  activation: what any observer pays at least;
* **peer**: a hand-written hook script counting each unit's firing positions,
  ``counts += (out > 0).sum(dims)`` per activation call (firing counts only; deadrelu
  keeps seven counters per unit);
* **deadrelu**: a :class:`~deadrelu.collector.Collector` past its first forward (the
  steady state of a scan), with the fused kernel, and **eager** without it.

The hooks of floor and peer sit on the activation modules (``nn.ReLU``, transformers'
``GELUActivation``...); where the activation is a function (``nn.TransformerEncoderLayer``
calls ``F.relu``) they sit on the layer that feeds it and apply the function first.

**Whole scan**: ``deadrelu.scan`` of 8 batches (first forward, fixed costs, diagnosis
and report included) against a loop of the same 8 plain forwards, alternating.

**Clock** (``--clock``): the per-forward variants are timed by the CPU time of the thread
that runs them (``cpu``, the default) or by the wall clock (``wall``). With one torch
thread the whole forward, hooks and kernel included, runs on that thread, so its CPU time
is the forward's cost without the time other jobs on a shared machine take from it, which
makes the ratios several times steadier there. The whole scan is always timed by the wall
clock: it may do work on another thread (the weights' fingerprint), which is part of what
a user waits for only where it does not overlap the forwards.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402

import deadrelu  # noqa: E402
from deadrelu import native  # noqa: E402
from deadrelu.collector import Collector  # noqa: E402
from deadrelu.kinds import MODULES  # noqa: E402

Batch = Callable[[torch.Generator], torch.Tensor]

#: name → (model factory, one batch)
CASES: dict[str, tuple[Callable[[], nn.Module], Batch]] = {
    "resnet18-cifar (batch 16)": (models.ResNet18, lambda g: torch.randn(16, 3, 32, 32, generator=g)),
    "resnet50 64px (batch 16)": (models.ResNet50, lambda g: torch.randn(16, 3, 64, 64, generator=g)),
    "resnet50 224px (batch 2)": (models.ResNet50, lambda g: torch.randn(2, 3, 224, 224, generator=g)),
    "mlp-6x1024 (batch 256)": (models.mlp, lambda g: torch.randn(256, 784, generator=g)),
    "t5-small encoder (4x64 tokens)": (models.t5_small_encoder,
                                       lambda g: torch.randint(0, 32128, (4, 64), generator=g)),
    "bert-small encoder (4x64 tokens)": (models.bert_small_encoder,
                                         lambda g: torch.randint(0, 30522, (4, 64), generator=g)),
    "transformer-4x256 (32x64 tokens)": (models.transformer,
                                         lambda g: torch.randn(32, 64, 256, generator=g)),
}
DEFAULT = [name for name in CASES if "224px" not in name]


def _observed(model: nn.Module) -> list[tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
    """(module, what turns its output into the activation) for floor and peer hooks."""
    acts = [m for m in model.modules()
            if type(m) in MODULES or type(m).__name__.endswith("Activation")]
    if acts:
        return [(m, lambda y: y) for m in acts]
    layers = [m for m in model.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    return [(layer.linear1, torch.relu) for layer in layers]


@contextmanager
def _hooks(model: nn.Module, read: Callable[[torch.Tensor], Any]) -> Iterator[None]:
    handles = []
    for module, act in _observed(model):
        def hook(m: nn.Module, args: Any, out: torch.Tensor, act=act) -> None:
            read(act(out))
        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _floor(model: nn.Module) -> Any:
    return _hooks(model, lambda y: y.sum())


def _peer(model: nn.Module) -> Any:
    counts: dict[tuple[int, ...], torch.Tensor] = {}

    def count(y: torch.Tensor) -> None:
        dims = (0, 2, 3) if y.dim() == 4 else tuple(range(y.dim() - 1))
        fired = (y > 0).sum(dims)
        key = tuple(fired.shape)
        counts[key] = counts[key] + fired if key in counts else fired

    return _hooks(model, count)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _unfused() -> Iterator[None]:
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


def _stats(ratios: list[float]) -> tuple[float, float, float]:
    return min(ratios), statistics.median(ratios), max(ratios)


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}


def recording(name: str, reps: int, clock: Callable[[], float] = time.thread_time
              ) -> dict[str, Any]:
    make, batch = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    x = batch(torch.Generator().manual_seed(1))
    collector = Collector(model)

    @contextmanager
    def recorded() -> Iterator[None]:
        with collector:
            yield

    @contextmanager
    def eager() -> Iterator[None]:
        with native.disabled(), collector:
            yield

    variants: dict[str, Callable[[], Any]] = {
        "plain": _nothing, "floor": lambda: _floor(model), "peer": lambda: _peer(model),
        "deadrelu": recorded, "eager": eager}
    transformer = any(isinstance(m, nn.TransformerEncoderLayer) for m in model.modules())
    if transformer:
        variants["unfused"] = _unfused
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for key in variants:  # warm-up; the collector's first forward finds the sites
            with variants[key]():
                model(x)
        order = list(variants)
        for _ in range(reps):
            random.shuffle(order)
            for key in order:
                with variants[key]():
                    start = clock()
                    model(x)
                    times[key].append(clock() - start)
    row: dict[str, Any] = {"model": name, "plain_ms": statistics.median(times["plain"]) * 1e3,
                           "sites": len(collector.sites), "hooked": getattr(collector, "_hooked", False)}
    base = "unfused" if transformer else "plain"
    for key in variants:
        row[key] = _stats([t / p for t, p in zip(times[key], times[base], strict=True)])
    if transformer:
        row["fused_vs_unfused"] = _stats([p / u for p, u in zip(times["plain"], times["unfused"],
                                                                 strict=True)])
        row["vs_fused"] = _stats([d / p for d, p in zip(times["deadrelu"], times["plain"],
                                                         strict=True)])
    return row


def whole_scan(name: str, reps: int) -> tuple[float, float, float]:
    make, batch = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    gen = torch.Generator().manual_seed(1)
    batches = [batch(gen) for _ in range(8)]
    ratios = []
    for i in range(reps + 1):
        times = {}
        for key in (("plain", "scan") if i % 2 else ("scan", "plain")):
            start = time.perf_counter()
            if key == "plain":
                with torch.no_grad():
                    for b in batches:
                        model(b)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    deadrelu.scan(model, batches, batch_size=len(batches[0]))
            times[key] = time.perf_counter() - start
        if i:  # the first pair warms up
            ratios.append(times["scan"] / times["plain"])
    return _stats(ratios)


def _fmt(t: tuple[float, float, float]) -> str:
    return f"{t[1]:.3f} ({t[0]:.3f}–{t[2]:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--scan-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                    help="what times one forward: this thread's CPU time, or the wall clock")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--note", default="", help="a line to add under the table (machine load)")
    ap.add_argument("--out", default="floor.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not native.available():
        print(f"note: {native.reason()}; the kernel's numbers equal the eager ones")
    names = args.only or DEFAULT
    lines = [
        f"# Recording against its floor ({platform.machine()}, {args.threads} thread(s), "
        f"torch {torch.__version__})", "",
        f"Ratios to the plain forward (Transformer: to its unfused path), median (min–max) of "
        f"{args.reps} repetitions, variants shuffled in each, timed by "
        f"{'the thread CPU time' if args.clock == 'cpu' else 'the wall clock'}. Whole scan "
        f"(wall clock): 8 batches, {args.scan_reps} alternating pairs.", "",
        "| model | plain (ms) | sites | floor | peer | deadrelu | deadrelu, eager | "
        "whole scan / 8 forwards |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes = []
    for name in names:
        row = recording(name, args.reps, CLOCKS[args.clock])
        scan = whole_scan(name, args.scan_reps) if args.scan_reps else None
        lines.append(f"| {name} | {row['plain_ms']:.1f} | {row['sites']} | {_fmt(row['floor'])} | "
                     f"{_fmt(row['peer'])} | {_fmt(row['deadrelu'])} | {_fmt(row['eager'])} | "
                     f"{_fmt(scan) if scan else '–'} |")
        if "fused_vs_unfused" in row:
            notes.append(f"{name}: the fused fast path takes {_fmt(row['fused_vs_unfused'])} of "
                         "the unfused path's time; deadrelu against the fused plain forward: "
                         f"{_fmt(row['vs_fused'])}.")
        if row["hooked"]:
            notes.append(f"{name}: recorded by module hooks alone (no interception mode).")
        print(lines[-1], flush=True)
    lines += [""] + notes
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results" / args.out).write_text(text)


if __name__ == "__main__":
    main()
