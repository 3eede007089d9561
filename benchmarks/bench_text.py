"""A text scan end to end, and the memory of loading a model directory.

Run from the repository root: ``python benchmarks/bench_text.py [--reps 5] [--sentences 4000]``
(writes ``benchmarks/results/text.md``). Needs ``transformers``.

**Time.** Two subprocesses with the same Python, alternating, ``--reps`` times after
one warm-up each, on the same generated text (``--sentences`` lines from the
grammar of ``sample_models/train_tiny_lm.py``) and the shipped ``sample_models/tiny_lm``:

* **cli**: ``python -m deadrelu scan sample_models/tiny_lm --data TEXT --no-progress``:
  tokenization (one tokenizer call per batch of 64), the forward passes, the
  recording with padding excluded, the diagnosis and the report;
* **script**: what a careful user writes by hand for the same numbers: load
  tokenizer and model with ``from_pretrained``, read the lines, tokenize in batches
  of 64 (padding per batch), run the model under ``no_grad`` with forward hooks on
  the ReLU modules that OR "fired on a real token" per unit, and print the dead counts.

The ratio of the medians (cli / script) of wall time is the number the issue bounds
(≤ 1.15); CPU time (user + sys of the child) is beside it.

**Memory.** Peak resident memory (``ru_maxrss``) of a child process that imports
everything, then loads a model directory, minus that of a child that only imports:
with ``deadrelu.loading.load_model`` and with ``from_pretrained`` alone; for the
sample directory and for a generated ~100 MB OPT directory, where a second copy of
the weights would show.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LM = "sample_models/tiny_lm"

SCRIPT = """
import sys
import torch
from transformers import AutoTokenizer, AutoModelForCausalLM
from transformers.utils import logging
logging.disable_progress_bar()
tok = AutoTokenizer.from_pretrained("{model}", local_files_only=True)
model = AutoModelForCausalLM.from_pretrained("{model}", local_files_only=True).eval()
lines = [l.rstrip("\\n") for l in open("{data}", encoding="utf-8") if l.strip()]
fired = {{}}
mask = [None]

def hook(name):
    def record(module, inputs, output):
        real = mask[0]
        out = output.reshape(*real.shape, output.shape[-1])
        seen = ((out > 0) & real.unsqueeze(-1)).flatten(0, 1).any(0)
        fired[name] = fired[name] | seen if name in fired else seen
    return record

for name, module in model.named_modules():
    if isinstance(module, torch.nn.ReLU):
        module.register_forward_hook(hook(name))
with torch.no_grad():
    for start in range(0, len(lines), 64):
        batch = tok(lines[start:start + 64], padding=True, truncation=True, max_length=32,
                    return_tensors="pt")
        mask[0] = batch["attention_mask"].bool()
        model(**batch)
for name, seen in fired.items():
    print(name, int((~seen).sum()), "of", seen.numel(), "dead")
"""

IMPORTS = "import torch, transformers, deadrelu.loading.hf, safetensors.torch\n"
# Every weight is read once after loading (as a scan does), so memory-mapped pages count.
TOUCH = "total = sum(float(p.sum()) for p in m.parameters())\n"
LOAD_DEADRELU = IMPORTS + ("from deadrelu.loading import load_model\n"
                           "m = load_model({model!r}).model\n") + TOUCH
LOAD_HF = IMPORTS + (
    "from transformers import AutoModelForCausalLM\n"
    "m = AutoModelForCausalLM.from_pretrained({model!r}, local_files_only=True)\n") + TOUCH
REPORT_RSS = "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"


def _run(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds user+sys, stdout) of one subprocess run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"benchmark command failed ({done.returncode}): {' '.join(argv)}\n"
                         f"{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, done.stdout


def write_text(path: Path, sentences: int) -> None:
    sys.path.insert(0, str(ROOT / "sample_models"))
    from train_tiny_lm import sentence

    rng = random.Random(1234)
    path.write_text("\n".join(sentence(rng) for _ in range(sentences)) + "\n", encoding="utf-8")


def time_scan(data: Path, reps: int) -> dict[str, float]:
    cli = [sys.executable, "-m", "deadrelu", "scan", LM, "--data", str(data), "--no-progress"]
    script = [sys.executable, "-c", SCRIPT.format(model=LM, data=data)]
    _run(cli)
    _run(script)  # warm-up: page cache, .pyc files
    times: dict[str, list[tuple[float, float]]] = {"cli": [], "script": []}
    for i in range(reps):
        order = [("cli", cli), ("script", script)]
        for key, argv in order if i % 2 == 0 else order[::-1]:
            wall, cpu, _ = _run(argv)
            times[key].append((wall, cpu))
    out = {}
    for key, values in times.items():
        out[key] = statistics.median(v[0] for v in values)
        out[f"{key}_cpu"] = statistics.median(v[1] for v in values)
    out["ratio"] = out["cli"] / out["script"]
    out["cpu_ratio"] = out["cli_cpu"] / out["script_cpu"]
    return out


def peak_rss_mb(code: str) -> float:
    _, _, stdout = _run([sys.executable, "-c", code + REPORT_RSS])
    return int(stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def make_big_model(folder: Path) -> int:
    from transformers import OPTConfig, OPTForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    config = OPTConfig(vocab_size=8000, hidden_size=512, num_hidden_layers=8, ffn_dim=2048,
                       num_attention_heads=8, max_position_embeddings=128, word_embed_proj_dim=512)
    model = OPTForCausalLM(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def memory(model: str) -> dict[str, float]:
    base = statistics.median(peak_rss_mb(IMPORTS) for _ in range(2))
    ours = statistics.median(peak_rss_mb(LOAD_DEADRELU.format(model=model)) for _ in range(2))
    theirs = statistics.median(peak_rss_mb(LOAD_HF.format(model=model)) for _ in range(2))
    return {"imports": base, "deadrelu": ours, "from_pretrained": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "text.md")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "text.txt"
        write_text(data, args.sentences)
        timing = time_scan(data, args.reps)
        small = memory(LM)
        params = make_big_model(Path(tmp) / "big")
        size = sum(f.stat().st_size for f in (Path(tmp) / "big").iterdir()) / 2**20
        big = memory(str(Path(tmp) / "big"))
    lines = [
        "# Text scan end to end, and loading memory",
        "",
        f"Generated by `python benchmarks/bench_text.py --reps {args.reps} --sentences "
        f"{args.sentences}`. Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, load average at the end "
        f"{os.getloadavg()[0]:.1f}. **Taken on a shared, loaded machine (other jobs running): "
        "wall times are noisy; CPU times less so.**",
        "",
        f"## `deadrelu scan {LM}` on {args.sentences:,} sentences vs a hand-written script",
        "",
        "| script, wall | `deadrelu scan`, wall | **ratio** (goal ≤ 1.15) | CPU: script / scan "
        "| CPU ratio |",
        "|--:|--:|--:|--:|--:|",
        f"| {timing['script']:.2f} s | {timing['cli']:.2f} s | **{timing['ratio']:.2f}** "
        f"| {timing['script_cpu']:.2f} s / {timing['cli_cpu']:.2f} s | {timing['cpu_ratio']:.2f} |",
        "",
        "## Peak resident memory of loading a model directory and reading every weight once",
        "",
        f"Peak RSS of a process (`ru_maxrss`). Imports alone (torch, transformers, safetensors, "
        f"deadrelu's loader): {small['imports']:.0f} MB.",
        "",
        "| directory | weights on disk | `deadrelu.loading.load_model` | `from_pretrained` alone |",
        "|---|--:|--:|--:|",
        f"| `{LM}` | 0.24 MB | {small['deadrelu']:.0f} MB | {small['from_pretrained']:.0f} MB |",
        f"| generated OPT, {params / 1e6:.0f} M parameters (float32) | {size:.0f} MB "
        f"| {big['deadrelu']:.0f} MB | {big['from_pretrained']:.0f} MB |",
        "",
        "The loader is `from_pretrained` (safetensors memory-mapped, each tensor materialised "
        "once); a peak equal to `from_pretrained`'s alone means no second copy of the weights. "
        "The peak above the imports is the size of the weights, plus the model classes' own "
        "imports.",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
