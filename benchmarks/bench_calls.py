"""Python cost per activation call in steady state: deadrelu against a plain hook.

Run: ``python benchmarks/bench_calls.py [--reps 301]`` (writes benchmarks/results/calls.md).

The model is 50 blocks of ``Linear(64, 64)`` and an activation, at batch 8: the
tensors are so small that a forward is almost all Python, so what recording adds per
call is its fixed cost, not its arithmetic. In one run, with the variants interleaved
(their order shuffled in every repetition), one thread, eval mode, ``no_grad``:

* **plain**: nothing attached;
* **floor**: a forward hook on every activation module doing ``out.sum()`` — the
  least any observer that reads each activation pays;
* **deadrelu**: a :class:`deadrelu.collector.Collector` attached and past its first
  forward (steady state), with the fused kernel, and with the eager statistics.

Per call = (variant − plain) / activation calls, from the medians (the minima beside).
Cases: ``nn.ReLU`` modules (the fused ReLU), ``nn.GELU`` modules (statistics of the
output), and ``F.relu`` called in the forward (functional sites: only the
interception sees them, so the floor there is the same hook on a wrapper module).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from deadrelu import native
from deadrelu.collector import Collector

BLOCKS = 50


class _Functional(nn.Module):
    """Linear layers with ``F.relu`` between them (no activation modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(64, 64) for _ in range(BLOCKS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.nn.functional.relu(layer(x))
        return x


def _stack(act: Callable[[], nn.Module]) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(BLOCKS):
        layers += [nn.Linear(64, 64), act()]
    return nn.Sequential(*layers)


CASES: dict[str, Callable[[], nn.Module]] = {
    "nn.ReLU modules": lambda: _stack(nn.ReLU),
    "nn.GELU modules": lambda: _stack(nn.GELU),
    "F.relu in forward": _Functional,
}


@contextmanager
def _floor(model: nn.Module) -> Iterator[None]:
    """One forward hook per activation doing one read of its output."""
    def hook(module: nn.Module, args: object, out: torch.Tensor) -> None:
        out.sum()

    targets = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    if not targets:  # functional: the hook sits on the layers whose output it reads
        targets = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in targets]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def measure(name: str, reps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = CASES[name]().eval()
    x = torch.randn(8, 64)
    collector = Collector(model)

    @contextmanager
    def nothing() -> Iterator[None]:
        yield

    @contextmanager
    def recorded() -> Iterator[None]:
        collector.attach()
        try:
            yield
        finally:
            collector.detach()

    @contextmanager
    def eager() -> Iterator[None]:
        with native.disabled(), recorded():
            yield

    variants = {"plain": nothing, "floor": lambda: _floor(model), "deadrelu": recorded,
                "deadrelu, eager statistics": eager}
    with torch.no_grad():
        with recorded():
            model(x)  # the first forward finds the sites
        times: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        for _ in range(reps):
            random.shuffle(order)
            for key in order:
                with variants[key]():
                    start = time.perf_counter()
                    model(x)
                    times[key].append(time.perf_counter() - start)
    calls = len(collector.sites)
    assert calls == BLOCKS, (name, calls)
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    row = {"plain_us": med["plain"] * 1e6}
    for key in variants:
        if key != "plain":
            row[key] = (med[key] - med["plain"]) / calls * 1e6
            row[key + " (min)"] = (low[key] - low["plain"]) / calls * 1e6
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=301)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note", default="", help="a line to add under the table (e.g. machine load)")
    ap.add_argument("--out", default="calls.md", help="file name under benchmarks/results/")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not native.available():
        print(f"note: {native.reason()}; the kernel's numbers equal the eager ones")
    lines = [
        f"# Python cost per activation call ({platform.machine()}, {args.threads} thread(s), "
        f"torch {torch.__version__}, median of {args.reps} shuffled repetitions)", "",
        f"{BLOCKS} blocks of Linear(64, 64) + activation, batch 8, eval, no_grad. Microseconds "
        "added per activation call (median; minimum in brackets).", "",
        "| case | plain forward (µs) | floor: hook with one read | deadrelu | deadrelu, eager "
        "statistics |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in CASES:
        r = measure(name, args.reps)
        cells = [f"{r[k]:.1f} ({r[k + ' (min)']:.1f})"
                 for k in ("floor", "deadrelu", "deadrelu, eager statistics")]
        lines.append(f"| {name} | {r['plain_us']:.0f} | " + " | ".join(cells) + " |")
    if args.note:
        lines += ["", args.note]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / args.out
    out.write_text(text)


if __name__ == "__main__":
    main()
