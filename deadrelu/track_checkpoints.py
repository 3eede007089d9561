"""Track dead units across the saved checkpoints of one training run (after training).

:func:`track` is ``deadrelu track``; its counterpart *during* training is
:class:`deadrelu.Monitor` (:mod:`deadrelu.monitor`), which scans the live model
every few steps instead of files saved to disk.

``track`` scans every checkpoint of a run with the same data and lines the
reports up by training step, so that the moment units died (a learning-rate
spike, a bad batch, a schedule change) shows as a jump between two consecutive
checkpoints, with the units that died named.

Invariants:

* Checkpoints are ordered by the step/epoch number in their *names*
  (``step_100.pt``, ``epoch-3.ckpt``, ``ckpt_000500.pt``,
  ``epoch=3-step=1200.ckpt``, ``checkpoint-500/model.safetensors``), never by
  modification time or by plain string order (which puts ``step_1000`` before
  ``step_200``). A file without a number is skipped with a note
  (``last.ckpt``); two files with the same step are an error.
* One model instance serves every checkpoint: its weights are replaced with
  ``load_state_dict`` per checkpoint, through the same key alignment and
  shape checks as ``deadrelu scan``. The model passed in ends up holding the
  last checkpoint's weights.
* The data must be re-iterable (a tensor, a ``DataLoader``, a ``DataSource``),
  since every checkpoint is scanned on the same samples.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from deadrelu.errors import CheckpointError, ConfigError
from deadrelu.gates import units_list
from deadrelu.wording import MODEL

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from torch import nn

    from deadrelu.report import Report

#: File suffixes taken from a directory (a glob takes whatever it matches).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors")

# Named counters in checkpoint names, most specific first: "epoch=3-step=1200" is step 1200.
_KEYED = [
    ("step", re.compile(r"(?<![a-z])steps?[-_=]?(\d+)", re.IGNORECASE)),
    ("iteration", re.compile(r"(?<![a-z])(?:iter(?:ation)?s?|it)[-_=]?(\d+)", re.IGNORECASE)),
    ("epoch", re.compile(r"(?<![a-z])(?:epochs?|ep)[-_=]?(\d+)", re.IGNORECASE)),
    ("checkpoint", re.compile(r"(?<![a-z])(?:checkpoint|ckpt)s?[-_=]?(\d+)", re.IGNORECASE)),
]
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file and the training step its name gives."""

    path: Path
    step: int
    counter: str = "step"  # the number used: step, iteration, epoch, checkpoint or number

    @property
    def label(self) -> str:
        return self.path.name


def step_of(path: str | Path) -> tuple[int, str] | None:
    """The training step in a checkpoint's name, and which counter it came from.

    Looks at the file name without suffix, then, for a name without any number, at the
    parent folder's name (``checkpoint-500/model.safetensors``; only a named counter
    counts there). ``step`` beats ``iter`` beats ``epoch`` beats ``checkpoint``/``ckpt``
    beats the last plain number.

    >>> step_of("runs/epoch=3-step=1200.ckpt")
    (1200, 'step')
    >>> step_of("ckpt_000500.pt")
    (500, 'checkpoint')
    """
    p = Path(path)
    stem = p.name
    for suffix in p.suffixes[-2:]:  # "model.pt.tar" → "model"; keeps "v1.5"-like stems whole
        if suffix.lower() in (*CHECKPOINT_SUFFIXES, ".pt2"):
            stem = stem[: -len(suffix)]
    for counter, pattern in _KEYED:
        found = pattern.findall(stem)
        if found:
            return int(found[-1]), counter
    numbers = _NUMBER.findall(stem)
    if numbers:
        return int(numbers[-1]), "number"
    # A generic file name in a per-checkpoint folder; only a *named* counter counts there,
    # so that "runs/exp2/last.ckpt" does not become step 2.
    for counter, pattern in _KEYED:
        found = pattern.findall(p.parent.name)
        if found:
            return int(found[-1]), counter
    return None


def discover(spec: str | Path | Sequence[str | Path]) -> tuple[list[Checkpoint], list[str]]:
    """Find and order the checkpoints of a run.

    Args:
        spec: a directory (its checkpoint files, not recursive), a glob
            (``runs/a/step_*.pt``; ``**`` recurses) or a list of files.

    Returns:
        ``(checkpoints, notes)``: the checkpoints by step, and notes on skipped files.

    Raises:
        CheckpointError: nothing found, fewer than two checkpoints with a step number,
            or two files with the same step.
    """
    if isinstance(spec, (str, Path)):
        files, shown = _expand(spec), str(spec)
    else:
        files, shown = [Path(s) for s in spec], "the given files"
        missing = [str(f) for f in files if not (f.is_file() or _model_dir(f))]
        if missing:
            raise CheckpointError(f"checkpoint file {missing[0]} does not exist", "check the path")
    checkpoints: list[Checkpoint] = []
    skipped: list[str] = []
    for f in files:
        found = step_of(f)
        if found is None:
            skipped.append(f.name)
        else:
            checkpoints.append(Checkpoint(f, *found))
    notes = [f"skipped {', '.join(skipped)}: no step number in the name"] if skipped else []
    if len(checkpoints) < 2:
        what = f"{len(checkpoints)} checkpoint" + ("" if len(checkpoints) == 1 else "s")
        raise CheckpointError(
            f"{shown}: found {what} with a step number in the name"
            + (f" (skipped {', '.join(skipped[:3])})" if skipped else ""),
            "track needs two or more files named like step_100.pt, epoch-3.ckpt or "
            "ckpt_000500.pt; for a single model use `deadrelu scan`",
        )
    checkpoints.sort(key=lambda c: (c.step, _natural(c.path.as_posix())))
    counters = {c.counter for c in checkpoints}
    if len(counters) > 1:
        notes.append(f"checkpoint names mix counters ({', '.join(sorted(counters))}); "
                     "ordered by the number each name gives")
    for a, b in zip(checkpoints, checkpoints[1:], strict=False):
        if a.step == b.step:
            raise CheckpointError(
                f"{a.path} and {b.path} both have step {a.step}",
                "narrow the selection with a glob, e.g. 'DIR/step_*.pt'",
            )
    return checkpoints, notes


def _model_dir(path: Path) -> bool:
    """A Hugging Face ``save_pretrained`` directory (the Trainer's ``checkpoint-500/``)."""
    return path.is_dir() and (path / "config.json").is_file()


def _expand(spec: str | Path) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        if _model_dir(path):
            raise CheckpointError(
                f"{path} is a single model directory",
                "pass the folder holding the run's checkpoint-* directories, or use "
                "`deadrelu scan` for one model")
        files = [p for p in path.iterdir()
                 if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES]
        if not files:  # a Trainer's output_dir: checkpoint-500/, checkpoint-1000/, ...
            files = [p for p in path.iterdir() if _model_dir(p)]
        if not files:
            raise CheckpointError(
                f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)}) or model directories "
                f"in {path}",
                "pass a glob that matches them, e.g. 'runs/*/model.safetensors'",
            )
        return files
    if path.is_file():
        raise CheckpointError(f"{path} is a single file",
                              "pass the folder holding the checkpoints or a glob such as 'DIR/step_*.pt'")
    files = [Path(p) for p in glob.glob(str(spec), recursive=True)
             if Path(p).is_file() or _model_dir(Path(p))]
    if not files:
        if not glob.has_magic(str(spec)):
            raise CheckpointError(f"{spec} does not exist", "pass a folder of checkpoints or a glob")
        raise CheckpointError(f"no files match {spec!r}",
                              "check the pattern (quote it so the shell does not expand it)")
    return files


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


# -- loading ------------------------------------------------------------------------------


# -- the trend ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """What changed in one layer between two consecutive checkpoints."""

    layer: str
    from_step: int
    to_step: int
    before: float
    after: float
    died: tuple[int, ...]
    revived: tuple[int, ...]

    @property
    def change(self) -> float:
        """Change of the dead fraction (0.05 = +5 percentage points)."""
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "from_step": self.from_step, "to_step": self.to_step,
                "before": self.before, "after": self.after, "change": self.change,
                "died": list(self.died), "revived": list(self.revived)}

    def describe(self) -> str:
        text = (f"step {self.from_step} -> {self.to_step}: dead {self.before * 100:.1f}% -> "
                f"{self.after * 100:.1f}% ({self.change * 100:+.1f} pp)")
        if self.died:
            text += f", {len(self.died)} unit(s) died: {units_list(self.died)}"
        if self.revived:
            text += f", {len(self.revived)} revived: {units_list(self.revived)}"
        return text


@dataclass(frozen=True)
class Trend:
    """Reports of one run's checkpoints, in step order.

    Attributes:
        checkpoints: the checkpoints, by step.
        reports: one report per checkpoint, same order.
        min_jump: rise in dead fraction between consecutive checkpoints that counts as
            a jump (0.05 = 5 percentage points).
        notes: what discovery and loading skipped or adjusted.
    """

    checkpoints: tuple[Checkpoint, ...]
    reports: tuple[Report, ...]
    min_jump: float = 0.05
    notes: tuple[str, ...] = ()

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    @cached_property
    def layer_names(self) -> list[str]:
        """Layers in forward order, as first seen across the checkpoints."""
        names: dict[str, None] = {}
        for r in self.reports:
            names.update((s.info.name, None) for s in r.sites)
        return list(names)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """Long table: one row per checkpoint and layer (and ``(model)`` for the total).

        Columns: ``step``, ``checkpoint``, ``layer``, ``units``, ``dead``,
        ``dead_fraction``, ``died``, ``revived`` (units since the previous checkpoint).
        """
        import pandas as pd

        moves = {(t.to_step, t.layer): t for t in self.transitions}
        rows = []
        for ckpt, report in zip(self.checkpoints, self.reports, strict=True):
            died_total = revived_total = 0
            for rec in report.layer_records():
                t = moves.get((ckpt.step, rec["layer"]))
                died, revived = (len(t.died), len(t.revived)) if t else (0, 0)
                died_total += died
                revived_total += revived
                rows.append({"step": ckpt.step, "checkpoint": str(ckpt.path), "layer": rec["layer"],
                             "units": rec["units"], "dead": rec["dead"],
                             "dead_fraction": rec["dead_fraction"], "died": died,
                             "revived": revived})
            s = report.summary()
            rows.append({"step": ckpt.step, "checkpoint": str(ckpt.path), "layer": MODEL,
                         "units": s["units"], "dead": s["dead"], "dead_fraction": s["dead_fraction"],
                         "died": died_total, "revived": revived_total})
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """Wide table of dead fractions: one row per layer (and ``(model)``), one column per step."""
        wide = self.frame.pivot(index="layer", columns="step", values="dead_fraction")
        return wide.reindex([*self.layer_names, MODEL])

    @cached_property
    def transitions(self) -> list[Transition]:
        """Every layer's change between each pair of consecutive checkpoints."""
        out = []
        pairs = zip(self.checkpoints, self.reports, strict=True)
        prev: tuple[Checkpoint, Report] | None = None
        for ckpt, report in pairs:
            if prev is not None:
                p_ckpt, p_report = prev
                before = {s.info.name: s.info.units for s in p_report.sites}
                for s in report.sites:
                    name = s.info.name
                    if before.get(name) != s.info.units:
                        continue  # new or resized layer: nothing to compare
                    dead_then = set(p_report.units_in_state(name, "dead"))
                    dead_now = set(report.units_in_state(name, "dead"))
                    units = s.info.units or 1
                    out.append(Transition(name, p_ckpt.step, ckpt.step, len(dead_then) / units,
                                          len(dead_now) / units, tuple(sorted(dead_now - dead_then)),
                                          tuple(sorted(dead_then - dead_now))))
            prev = (ckpt, report)
        return out

    @cached_property
    def jumps(self) -> list[Transition]:
        """Per layer, the first transition whose dead fraction rose by at least ``min_jump``."""
        first: dict[str, Transition] = {}
        for t in self.transitions:
            if t.layer not in first and t.died and t.change >= self.min_jump - 1e-9:
                first[t.layer] = t
        return [first[n] for n in self.layer_names if n in first]

    @cached_property
    def model_jump(self) -> tuple[int, int, float, float] | None:
        """``(from_step, to_step, before, after)`` of the first whole-model jump, if any."""
        totals = [r.summary()["dead_fraction"] for r in self.reports]
        for i in range(1, len(totals)):
            if totals[i] - totals[i - 1] >= self.min_jump - 1e-9:
                return self.steps[i - 1], self.steps[i], totals[i - 1], totals[i]
        return None

    @property
    def first_jump(self) -> tuple[int, int] | None:
        """``(from_step, to_step)`` of the earliest jump of the whole model or any layer."""
        candidates = [(t.to_step, t.from_step) for t in self.jumps]
        if self.model_jump is not None:
            candidates.append((self.model_jump[1], self.model_jump[0]))
        if not candidates:
            return None
        to_step, from_step = min(candidates)
        return from_step, to_step

    @property
    def jump_step(self) -> int | None:
        """The first checkpoint (its step) at which the whole model or any layer had jumped."""
        first = self.first_jump
        return first[1] if first is not None else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready trend: checkpoints with their totals, per-layer rows, jumps, transitions."""
        return {
            "min_jump": self.min_jump,
            "checkpoints": [{"step": c.step, "path": str(c.path), **r.summary(),
                             **({"tokens": r.meta["tokens"]} if "tokens" in r.meta else {})}
                            for c, r in zip(self.checkpoints, self.reports, strict=True)],
            "rows": self.frame.to_dict(orient="records"),
            "jump_step": self.jump_step,
            "model_jump": (dict(zip(("from_step", "to_step", "before", "after"), self.model_jump,
                                    strict=True)) if self.model_jump else None),
            "jumps": [t.to_dict() for t in self.jumps],
            "transitions": [t.to_dict() for t in self.transitions if t.died or t.revived],
            "notes": list(self.notes),
        }

    def write_csv(self, path: str | Path) -> Path:
        """Write :attr:`frame` (long format) as CSV."""
        path = Path(path)
        self.frame.to_csv(path, index=False)
        return path

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        import json

        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @overload
    def plot(self, path: None = None) -> Figure: ...

    @overload
    def plot(self, path: str | Path) -> Path: ...

    def plot(self, path: str | Path | None = None) -> Figure | Path:
        """Dead fraction of every layer against step, jumps marked.

        Without ``path``: the matplotlib ``Figure`` (a notebook shows it). With ``path``
        (.png, .svg or .pdf): the figure is saved there and the path returned.

        Raises:
            ConfigError: an unsupported suffix, or matplotlib is not installed.
        """
        if path is None:
            return trend_figure(self)
        return plot_trend(self, path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars from pandas
        return value.item()
    return str(value)


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def trend_figure(trend: Trend) -> Figure:
    """See :meth:`Trend.plot`."""
    from deadrelu.plotting import dead_fraction_figure

    title = "Dead fraction per layer" + (f" (jump at step {trend.jump_step})"
                                         if trend.jump_step is not None else "")
    return dead_fraction_figure(trend.table(), total=MODEL,
                                jump_steps=[t.to_step for t in trend.jumps], title=title)


def require_matplotlib() -> None:
    """Raise the one-line ``pip install 'deadrelu[plot]'`` error when matplotlib is missing.

    Looks the package up without importing it (an import takes a second), so
    ``track --plot`` can refuse before it scans anything.
    """
    import importlib.util

    from deadrelu.errors import ConfigError

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("plotting needs matplotlib, which is not installed",
                          "pip install 'deadrelu[plot]'")


def plot_trend(trend: Trend, path: str | Path) -> Path:
    """See :meth:`Trend.plot`."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"cannot plot to {path.name}: unknown image type {path.suffix or '(none)'}",
                          f"use one of {', '.join(PLOT_SUFFIXES)}")
    trend_figure(trend).savefig(path)
    return path


# -- running ------------------------------------------------------------------------------

CheckpointCallback = Callable[[int, int, Checkpoint], None]


def track(
    model: nn.Module | None,
    checkpoints: str | Path | Sequence[str | Path | Checkpoint],
    data: Any,
    *,
    min_jump: float = 0.05,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    import_paths: Sequence[str | Path] = (),
    on_checkpoint: CheckpointCallback | None = None,
    scan_fn: Callable[..., Report] | None = None,
    load_dir: Callable[[Path], nn.Module] | None = None,
    data_for: Callable[[Path], Any] | None = None,
    **scan_kwargs: Any,
) -> Trend:
    """Scan every checkpoint of a run on the same data, reusing ``model``.

    Args:
        model: an instance of the run's architecture; its weights are replaced by each
            checkpoint's in turn (it ends with the last one's). For checkpoints that are
            Hugging Face model directories (a Trainer's ``checkpoint-500/``), each is
            built from its own directory instead; ``model``, when given, is taken as
            the first one's, already loaded.
        checkpoints: a directory (checkpoint files, or ``checkpoint-*`` model
            directories), a glob, or a list of files/directories/:class:`Checkpoint`.
        data: a re-iterable source of batches (tensor, DataLoader, DataSource).
        min_jump: rise in dead fraction that counts as a jump (0.05 = 5 percentage points).
        arch: the ``--arch`` spec, for error messages.
        trust_checkpoint, import_paths: as for loading a model (whole-model pickles).
        on_checkpoint: called as ``on_checkpoint(index, total, checkpoint)`` before each scan.
        scan_fn: the scan function (default :func:`deadrelu.scan`); the CLI passes its
            progress-bar wrapper.
        load_dir: builds the model of a model directory (default:
            :func:`deadrelu.loading.load_model` with ``arch`` and ``trust_checkpoint``);
            the CLI passes one that loads it as its first checkpoint was loaded.
        data_for: the data to scan a model directory's checkpoint on, called with its
            path after ``load_dir`` (default: ``data`` for every checkpoint); the CLI
            passes one that tokenizes text with each directory's own tokenizer.
        **scan_kwargs: passed to the scan (``limit``, ``thresholds``, ``device``...).

    Returns:
        The :class:`Trend`.

    Raises:
        CheckpointError: see :func:`discover` and :func:`load_weights`.
        ConfigError: ``data`` is a one-shot iterator, or ``min_jump`` is not in (0, 1].
    """
    if isinstance(min_jump, bool) or not isinstance(min_jump, (int, float)) or not 0 < min_jump <= 1:
        raise ConfigError(f"min_jump must be a share in (0, 1], got {min_jump!r}", "pass e.g. 0.05 (5 pp)")
    if isinstance(data, Iterable) and iter(data) is data:
        raise ConfigError(
            "track scans every checkpoint on the same data, but the data is a one-shot iterator",
            "pass a tensor, a DataLoader or a list of batches",
        )
    notes: list[str] = []
    if isinstance(checkpoints, (str, Path)):
        found, notes = discover(checkpoints)
    elif all(isinstance(c, Checkpoint) for c in checkpoints):
        found = sorted((c for c in checkpoints if isinstance(c, Checkpoint)), key=lambda c: c.step)
    else:
        found, notes = discover([c.path if isinstance(c, Checkpoint) else c for c in checkpoints])
    from deadrelu.loading.checkpoint import load_weights

    if scan_fn is None:
        from deadrelu.scanning import scan

        scan_fn = scan
    if load_dir is None:
        from deadrelu.loading.checkpoint import load_model

        def load_dir(path: Path) -> nn.Module:
            return load_model(path, arch=arch, trust_checkpoint=trust_checkpoint).model

    reports = []
    for index, ckpt in enumerate(found):
        if on_checkpoint is not None:
            on_checkpoint(index, len(found), ckpt)
        if ckpt.path.is_dir():
            if index or model is None:
                model = None  # the previous checkpoint's model is freed before the next loads
                model = load_dir(ckpt.path)
        elif model is None:
            raise ConfigError(f"{ckpt.path} is a weights file, and no model was given to load "
                              "it into", "pass the run's model (the CLI: --arch)")
        else:
            for note in load_weights(model, ckpt.path, arch=arch,
                                     trust_checkpoint=trust_checkpoint, import_paths=import_paths):
                if note not in notes:
                    notes.append(note)
        kwargs = {"model_name": ckpt.path.name, **scan_kwargs}
        batches = data_for(ckpt.path) if data_for is not None and ckpt.path.is_dir() else data
        reports.append(scan_fn(model, batches, **kwargs))
    return Trend(tuple(found), tuple(reports), float(min_jump), tuple(notes))


__all__ = [
    "CHECKPOINT_SUFFIXES", "MODEL", "Checkpoint", "Transition", "Trend", "discover",
    "plot_trend", "step_of", "track",
]
