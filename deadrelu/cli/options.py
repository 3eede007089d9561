"""Options shared by the commands that load a model and scan data (``scan``, ``check``, ``track``).

Three layers, each usable on its own:

* ``Annotated`` typer aliases (``ModelArg``, ``DataOpt``, ``RareOpt``...), so every
  command spells an option the same way, with the same help and help panel.
  Values a user can get wrong (shares, JSON, sizes) arrive as strings and are
  parsed later into one-line :class:`~deadrelu.errors.ConfigError` messages,
  instead of click's multi-line usage errors.
* :class:`LoadOptions` and :func:`load_model_and_data`: model file + data spec →
  ``(LoadedModel, DataSource)``, checked to fit before any forward pass.
* :func:`run_scan`: ``deadrelu.scan`` with a progress bar on stderr and the
  partial report on Ctrl-C.

Config (``[tool.deadrelu]``, see :mod:`deadrelu.config`) is read by
:func:`load_settings`; a flag given on the command line always wins over the file.

Only typer (and the standard library) is imported at module level: ``deadrelu
--help`` must answer without importing torch, pandas or rich tables.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from deadrelu.analyzer import Thresholds
    from deadrelu.config import Config
    from deadrelu.loading import DataSource, LoadedModel
    from deadrelu.report import Report

# Help panels, in the order they appear in ``--help``.
MODEL_PANEL = "Model"
DATA_PANEL = "Data"
THRESHOLD_PANEL = "Thresholds"
OUTPUT_PANEL = "Output"


class Dormancy(str, Enum):
    """Published dormancy definitions (see :mod:`deadrelu.analyzer`)."""

    redo = "redo"
    dohare = "dohare"
    dead = "dead"


class OutputFormat(str, Enum):
    """What a command prints (or writes with ``--output``)."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"


# -- typer aliases ---------------------------------------------------------------------------
# Defaults live on the command's parameters, not here: ``DataOpt`` with no default is a
# required option, and the threshold/batch options default to None so that
# [tool.deadrelu] can fill them in.

ModelArg = Annotated[Path, typer.Argument(
    metavar="MODEL", show_default=False,
    help="Model file: a state dict, whole-model pickle, safetensors, TorchScript or "
         "torch.export file (.pt, .pth, .bin, .ckpt, .pt2, .safetensors).",
)]
DataOpt = Annotated[str, typer.Option(
    "--data", "-d", metavar="PATH", show_default=False, rich_help_panel=DATA_PANEL,
    help="Data to run through the model: a folder of images (flat or one folder per class), "
         "an image, a .pt/.npy/.npz/.safetensors tensor file or folder, a .csv/.parquet table, "
         "or module:function / file.py:function returning batches (a DataLoader works).",
)]
ArchOpt = Annotated[str | None, typer.Option(
    "--arch", metavar="MODULE:CLASS", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Class or factory that builds the model, for files holding only weights "
         "(state dicts, safetensors): package.module:Class or path/to/file.py:Class.",
)]
ArchKwargsOpt = Annotated[str | None, typer.Option(
    "--arch-kwargs", metavar="JSON", show_default=False, rich_help_panel=MODEL_PANEL,
    help='Keyword arguments for --arch as a JSON object, e.g. \'{"hidden": 256}\'.',
)]
ImportPathOpt = Annotated[list[Path] | None, typer.Option(
    "--import-path", "-I", metavar="DIR", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Directory searched first for the model's code (repeatable); needed for whole-model "
         "pickles whose classes live next to the checkpoint (-I . for the working directory).",
)]
TrustCheckpointOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", rich_help_panel=MODEL_PANEL,
    help="Load the model file with torch's own, unchecked loaders (torch.load "
         "weights_only=False, torch.export.load). This runs code stored in the file: only for "
         "files you trust.",
)]
BatchSizeOpt = Annotated[int | None, typer.Option(
    "--batch-size", "-b", metavar="N", show_default=False, rich_help_panel=DATA_PANEL,
    help="Samples per forward pass for file data \\[default: 64].",
)]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", "-n", metavar="N", show_default=False, rich_help_panel=DATA_PANEL,
    help="Scan at most N samples \\[default: all].",
)]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", metavar="auto|cpu|cuda[:N]", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Where to run the model; auto picks CUDA when available \\[default: auto].",
)]
ImageSizeOpt = Annotated[str | None, typer.Option(
    "--image-size", metavar="H|HxW", show_default=False, rich_help_panel=DATA_PANEL,
    help="Resize images to H×H or H×W (images of different sizes need it).",
)]
NormalizeOpt = Annotated[str | None, typer.Option(
    "--normalize", metavar="SPEC", show_default=False, rich_help_panel=DATA_PANEL,
    help="Normalise inputs as (x - mean) / std: none, imagenet, MEAN,STD or "
         "m1/m2/m3,s1/s2/s3 per channel \\[default: none]. Image pixels are scaled to [0, 1] first.",
)]
TargetOpt = Annotated[str | None, typer.Option(
    "--target", metavar="COLUMN", show_default=False, rich_help_panel=DATA_PANEL,
    help="Label column of a CSV/Parquet table, left out of the inputs.",
)]
ChannelsOpt = Annotated[int | None, typer.Option(
    "--channels", metavar="1|3|4", show_default=False, rich_help_panel=DATA_PANEL,
    help="Read images as 1 (greyscale), 3 (RGB) or 4 (RGBA) channels \\[default: the input "
         "channels of the model's first conv layer; without one, 1 when the first image file is "
         "greyscale, else 3].",
)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="Read settings from FILE (\\[tool.deadrelu] of a pyproject.toml, or a plain TOML file) "
         "\\[default: the nearest pyproject.toml with a \\[tool.deadrelu] table].",
)]
RareOpt = Annotated[str | None, typer.Option(
    "--rare", metavar="SHARE", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="A unit firing on fewer than this share of samples is 'rare' (0.01 or 1%) \\[default: 1%].",
)]
AlwaysOnOpt = Annotated[str | None, typer.Option(
    "--always-on", metavar="SHARE", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="A ReLU-family unit firing on at least this share of inputs is 'always on', i.e. acts "
         "linearly \\[default: 99%].",
)]
SaturatedOpt = Annotated[str | None, typer.Option(
    "--saturated", metavar="SHARE", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="A sigmoid/tanh/ReLU6-type unit in its flat region on at least this share of inputs is "
         "'saturated' \\[default: 99%].",
)]
DormancyOpt = Annotated[Dormancy | None, typer.Option(
    "--dormancy", metavar="NAME", show_default=False, case_sensitive=False, rich_help_panel=THRESHOLD_PANEL,
    help="Definition behind the 'dormant' numbers: redo (Sokar et al. 2023, score ≤ tau), "
         "dohare (Dohare et al. 2024, active < 1%) or dead (never active) \\[default: redo].",
)]
TauOpt = Annotated[float | None, typer.Option(
    "--tau", metavar="TAU", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="ReDo's τ for --dormancy redo (0, 0.025 or 0.1 in the literature) \\[default: 0.025].",
)]
SelectOpt = Annotated[list[str] | None, typer.Option(
    "--select", metavar="CODES", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="Report only these rule codes or prefixes (comma-separated or repeated, e.g. DR001,DR01); "
         "replaces select in \\[tool.deadrelu].",
)]
IgnoreOpt = Annotated[list[str] | None, typer.Option(
    "--ignore", metavar="CODES", show_default=False, rich_help_panel=THRESHOLD_PANEL,
    help="Do not report these rule codes or prefixes (comma-separated or repeated); "
         "added to ignore in \\[tool.deadrelu], as ruff's --ignore.",
)]
NoProgressOpt = Annotated[bool, typer.Option(
    "--no-progress", rich_help_panel=OUTPUT_PANEL, help="Do not show the progress bar.",
)]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", rich_help_panel=OUTPUT_PANEL,
    help="No progress bar, no warnings; the table format prints only the summary line.",
)]
DebugOpt = Annotated[bool, typer.Option(
    "--debug", rich_help_panel=OUTPUT_PANEL,
    help="Show the full traceback of an error instead of one line.",
)]
FormatOpt = Annotated[OutputFormat, typer.Option(
    "--format", "-f", metavar="FORMAT", case_sensitive=False, rich_help_panel=OUTPUT_PANEL,
    help="table: the terminal report; json: the full report (Report.to_dict schema), nothing "
         "else on stdout; csv: the per-layer table; markdown: header, layer table and findings; "
         "html: one self-contained page with charts (use with --output report.html).",
)]
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="FILE", show_default=False, rich_help_panel=OUTPUT_PANEL,
    help="Write the chosen --format to FILE (the table is still printed unless --quiet).",
)]


# -- parsing ---------------------------------------------------------------------------------


def parse_share(value: str | float | None, option: str) -> float | None:
    """``"5%"`` → 0.05, ``"0.05"`` → 0.05, ``None`` → ``None``.

    Raises:
        ConfigError: not a number, or outside [0, 1].
    """
    from deadrelu.errors import ConfigError

    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        share = float(value)
    else:
        text = str(value).strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ConfigError(f"{option} {value!r} is not a share",
                              f"write e.g. {option} 0.01 or {option} 1%") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{option} {value!r} is outside 0..1 (0%..100%)",
                          f"write e.g. {option} 0.01 or {option} 1%")
    return share


def parse_arch_kwargs(value: str | None) -> dict[str, Any] | None:
    """The ``--arch-kwargs`` JSON object as a dict.

    Raises:
        ConfigError: not JSON, or JSON that is not an object.
    """
    from deadrelu.errors import ConfigError

    if value is None or not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--arch-kwargs {value!r} is not valid JSON ({exc.msg})",
                          'write a JSON object, e.g. --arch-kwargs \'{"hidden": 256}\'') from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"--arch-kwargs {value!r} is a JSON {type(parsed).__name__}, not an object",
                          'write a JSON object, e.g. --arch-kwargs \'{"hidden": 256}\'')
    return parsed


# -- settings: config file + flags -----------------------------------------------------------


def load_config_file(path: Path | None) -> Config:
    """``[tool.deadrelu]`` from ``--config`` or the nearest pyproject.toml (empty if none)."""
    from deadrelu.config import load_config

    return load_config(path)


@dataclass(frozen=True)
class ScanSettings:
    """Everything about *how* to scan, after merging the config file with the flags.

    Attributes:
        thresholds: the analyzer thresholds.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        unit_axis: site-name glob → unit dimension (config only).
        saturation_margin: sigmoid/tanh saturation band (config only).
        config: the config file's settings (diagnosis selection, check gates...).
    """

    thresholds: Thresholds
    device: str
    unit_axis: Mapping[str, int]
    saturation_margin: float
    config: Config

    def scan_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`deadrelu.scan` (and :func:`run_scan`)."""
        from deadrelu.diagnose.selection import Selection

        cfg = self.config
        selection = None
        if cfg.select is not None or cfg.ignore or cfg.per_layer_ignores:
            selection = Selection.from_options(cfg.select, cfg.ignore, cfg.per_layer_ignores)
        return {"unit_axis": dict(self.unit_axis) or None,
                "saturation_margin": self.saturation_margin, "selection": selection}


def load_settings(
    config: Path | None = None,
    *,
    rare: str | float | None = None,
    always_on: str | float | None = None,
    saturated: str | float | None = None,
    dormancy: Dormancy | str | None = None,
    tau: float | None = None,
    device: str | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
) -> ScanSettings:
    """Merge ``[tool.deadrelu]`` with command-line flags (flags win; ``None`` = not given).

    Raises:
        ConfigError: a malformed config file or flag value.
    """
    from deadrelu.errors import ConfigError

    cfg = load_config_file(config)
    # As in ruff: --select replaces the file's select, --ignore adds to its ignore.
    extra_ignore = _codes(ignore)
    cfg = cfg.with_overrides(select=_codes(select),
                             ignore=(*cfg.ignore, *extra_ignore) if extra_ignore else None)
    if tau is not None and tau < 0:
        raise ConfigError(f"--tau {tau} is negative", "ReDo uses 0, 0.025 or 0.1")
    thresholds = cfg.make_thresholds(
        rare=parse_share(rare, "--rare"),
        always_on=parse_share(always_on, "--always-on"),
        saturated=parse_share(saturated, "--saturated"),
        dormancy=dormancy.value if isinstance(dormancy, Dormancy) else dormancy,
        tau=tau,
    )
    margin = cfg.saturation_margin if cfg.saturation_margin is not None else 0.01
    return ScanSettings(thresholds, device or cfg.device or "auto", dict(cfg.unit_axis),
                        margin, cfg)


def _codes(values: list[str] | None) -> tuple[str, ...] | None:
    """``["DR001,DR002", "DR01"]`` → ``("DR001", "DR002", "DR01")``; ``None`` when not given."""
    if not values:
        return None
    return tuple(code.strip().upper() for value in values for code in value.split(",")
                 if code.strip())


# -- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """What to load: the model file and how to build it, the data and how to read it.

    Build it from raw CLI values with :meth:`from_cli`, which parses the strings.
    """

    model: Path
    data: str
    arch: str | None = None
    arch_kwargs: Mapping[str, Any] | None = None
    import_paths: tuple[Path, ...] = ()
    trust_checkpoint: bool = False
    batch_size: int = 64
    limit: int | None = None
    image_size: str | None = None
    normalize: str = "none"
    target: str | None = None
    channels: int | None = None
    config_file: Path | None = None  # the [tool.deadrelu] file the settings came from

    @classmethod
    def from_cli(
        cls,
        *,
        model: Path,
        data: str,
        arch: str | None = None,
        arch_kwargs: str | None = None,
        import_path: Sequence[Path] | None = None,
        trust_checkpoint: bool = False,
        batch_size: int | None = None,
        limit: int | None = None,
        image_size: str | None = None,
        normalize: str | None = None,
        target: str | None = None,
        channels: int | None = None,
        config: Config | None = None,
    ) -> LoadOptions:
        """Parse CLI strings; ``batch_size``/``limit`` fall back to the config, then defaults.

        Raises:
            ConfigError: bad ``--arch-kwargs`` JSON or a non-positive number.
        """
        from deadrelu.errors import ConfigError

        if batch_size is None:
            batch_size = config.batch_size if config and config.batch_size else 64
        if limit is None and config is not None:
            limit = config.limit
        if batch_size < 1:
            raise ConfigError(f"--batch-size {batch_size} is not positive", "pass --batch-size 1 or more")
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit {limit} is not positive", "pass --limit 1 or more, or leave it out")
        return cls(
            model=Path(model), data=data, arch=arch, arch_kwargs=parse_arch_kwargs(arch_kwargs),
            import_paths=tuple(Path(p) for p in import_path or ()),
            trust_checkpoint=trust_checkpoint, batch_size=batch_size, limit=limit,
            image_size=image_size, normalize=normalize or "none", target=target, channels=channels,
            config_file=config.source if config is not None else None,
        )

    def input_paths(self) -> list[Path]:
        """Files and folders this run reads (to refuse writing output over them)."""
        paths = [self.model]
        head, sep, _ = self.data.rpartition(":")
        data = Path(head) if sep and head.endswith(".py") else Path(self.data)
        paths.append(data)
        if self.arch:  # path/to/file.py:Class: the user's model code
            arch_file, sep, _ = self.arch.rpartition(":")
            if sep and arch_file.endswith(".py"):
                paths.append(Path(arch_file))
        paths.extend(Path(p) for p in self.import_paths)  # folders of model code
        if self.config_file is not None:
            paths.append(self.config_file)
        return paths


def load_model_and_data(opts: LoadOptions) -> tuple[LoadedModel, DataSource]:
    """Load the model, open the data, and check they fit, before any forward pass.

    Image channels default to the model's first conv layer's input channels, so a
    greyscale CNN reads greyscale PNGs without ``--channels 1``.

    Raises:
        CheckpointError, DataError, ConfigError: one-line, user-fixable problems.
    """
    from deadrelu.loading import check_fit, load_model, open_data
    from deadrelu.loading.checkpoint import sniff_format

    # Decided from the file's content, before any torch loader runs: loading a
    # TorchScript archive runs its code, and it could not be scanned anyway.
    if sniff_format(opts.model) == "torchscript":
        from deadrelu.errors import ModelError

        raise ModelError(
            f"{opts.model} is a TorchScript archive: it runs compiled graph code with no Python "
            "forward to observe, so its activations cannot be seen (deadrelu did not load it: "
            "loading TorchScript runs code from the file)",
            "scan the original nn.Module checkpoint (or a torch.export .pt2 program) instead",
        )
    loaded = load_model(
        opts.model, arch=opts.arch, arch_kwargs=opts.arch_kwargs,
        import_paths=opts.import_paths, trust_checkpoint=opts.trust_checkpoint,
    )
    channels = opts.channels
    if channels is None and _looks_like_images(opts.data):
        channels = _suggest_image_channels(loaded.model, Path(opts.data))
    source = open_data(
        opts.data, batch_size=opts.batch_size, limit=opts.limit, image_size=opts.image_size,
        normalize=opts.normalize, target=opts.target, channels=channels,
        import_paths=opts.import_paths,
    )
    if source.sample_shape is not None:
        check_fit(loaded.model, source.sample_shape, opts.batch_size, source.num_samples)
    return loaded, source


def _looks_like_images(spec: str) -> bool:
    """Whether ``--data`` points at images (so a channel count applies)."""
    return _first_image(Path(spec)) is not None


def _first_image(path: Path) -> Path | None:
    from deadrelu.loading.images import IMAGE_SUFFIXES

    if path.is_file():
        return path if path.suffix.lower() in IMAGE_SUFFIXES else None
    if path.is_dir():
        for sub in (path, *sorted(p for p in path.iterdir() if p.is_dir())[:3]):
            for entry in sorted(sub.iterdir()):
                if entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith("."):
                    return entry
    return None


def _suggest_image_channels(model: Any, data: Path) -> int | None:
    """Channels to read images with when ``--channels`` is not given.

    The model's first conv layer decides when it has one (a greyscale CNN reads
    greyscale, an RGB CNN reads RGB even from greyscale files). Otherwise (an MLP
    on flattened pixels) the images' own mode decides: greyscale files stay one
    channel, as torchvision's ``ToTensor`` would leave them.
    """
    from deadrelu.loading import suggest_channels

    suggested = suggest_channels(model)
    if suggested is not None:
        # open_data reads only 1, 3 or 4 channels; anything else is for check_fit to judge.
        return suggested if suggested in (1, 3, 4) else None
    first = _first_image(data)
    if first is None:
        return None
    try:
        from PIL import Image

        with Image.open(first) as image:
            mode = image.mode
    except Exception:  # unreadable or no Pillow: open_data reports it properly
        return None
    return 1 if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F") else None


# -- scanning --------------------------------------------------------------------------------


def freeze_gc() -> None:
    """Park every object allocated so far outside the garbage collector's reach.

    For CLI processes only (call it once the model is loaded), never library code.
    ``import torch`` and a loaded model leave a few hundred thousand objects that
    live as long as the process; without this, every later full collection
    (triggered by the many small allocations of the scan, the diagnosis and the
    rendering) walks them all again, which measurably slowed ``deadrelu scan`` end
    to end. :func:`gc.freeze` moves them to a permanent generation; objects
    created afterwards are collected as usual.
    """
    import gc

    gc.freeze()


def stderr_console() -> Any:
    """A rich console on stderr (progress, warnings), so stdout stays clean for the report."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def run_scan(
    model: Any,
    data: Any,
    *,
    thresholds: Thresholds,
    progress: bool,
    quiet: bool,
    device: str | None,
    model_name: str | None,
    data_name: str | None,
    notes: Sequence[str] = (),
    **scan_kwargs: Any,
) -> Report:
    """:func:`deadrelu.scan` with a transient progress bar on stderr; partial report on Ctrl-C.

    Args:
        model, data: as for :func:`deadrelu.scan`.
        thresholds: the analyzer thresholds.
        progress: show the progress bar (ignored when ``quiet``).
        quiet: no progress bar.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``None`` (the model's device).
        model_name, data_name: labels for the report header.
        notes: loader notes, added to ``report.meta["notes"]`` for the header.
        **scan_kwargs: passed on (``limit``, ``unit_axis``, ``saturation_margin``...).

    Returns:
        The report; ``report.partial`` is true when Ctrl-C stopped the scan.
    """
    from dataclasses import replace

    from deadrelu.scanning import scan

    scan_kwargs.setdefault("partial_on_interrupt", True)
    total = getattr(data, "num_samples", None)
    with _progress_bar(enabled=progress and not quiet, total=total) as update:
        report = scan(model, data, thresholds=thresholds, device=device, model_name=model_name,
                      data_name=data_name, progress=update, **scan_kwargs)
    if notes:
        merged = list(dict.fromkeys([*notes, *report.meta.get("notes", ())]))
        report = replace(report, meta={**report.meta, "notes": merged})
    return report


@contextlib.contextmanager
def _progress_bar(*, enabled: bool, total: int | None) -> Iterator[Any]:
    """Yields a ``progress(done, total)`` callback for :func:`deadrelu.scan`, or ``None``."""
    from deadrelu.progress import progress_bar

    with progress_bar(total=total, enabled=enabled) as update:
        yield update


@contextlib.contextmanager
def warnings_to_stderr(quiet: bool = False) -> Iterator[None]:
    """Show Python warnings as one ``warning: ...`` line each on stderr (none when ``quiet``)."""

    def show(message: Any, category: Any, filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if not quiet:
            sys.stderr.write(f"warning: {' '.join(str(message).split())}\n")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = show
        yield


__all__ = [
    "AlwaysOnOpt", "ArchKwargsOpt", "ArchOpt", "BatchSizeOpt", "ChannelsOpt", "ConfigOpt",
    "DataOpt", "DebugOpt", "DeviceOpt", "Dormancy", "DormancyOpt", "FormatOpt", "ImageSizeOpt",
    "ImportPathOpt", "LimitOpt", "freeze_gc", "LoadOptions", "ModelArg", "NoProgressOpt", "NormalizeOpt",
    "OutputFormat", "OutputOpt", "QuietOpt", "RareOpt", "SaturatedOpt", "ScanSettings",
    "TargetOpt", "TauOpt", "TrustCheckpointOpt", "load_config_file", "load_model_and_data",
    "load_settings", "parse_arch_kwargs", "parse_share", "run_scan", "stderr_console",
    "warnings_to_stderr",
]


def check_output_path(output: Path, inputs: list[Path]) -> None:
    """Refuse an ``--output`` that would overwrite (or write into) an input."""
    from deadrelu.errors import ConfigError

    target = output.resolve()
    for source in inputs:
        if not source.exists():
            continue  # loading will report it
        resolved = source.resolve()
        if target == resolved or (resolved.is_dir() and resolved in target.parents):
            raise ConfigError(
                f"--output {output} would overwrite the input {source}"
                if target == resolved else f"--output {output} is inside the input folder {source}",
                "write the report somewhere else; deadrelu never modifies its inputs",
            )
    if output.is_dir():
        raise ConfigError(f"--output {output} is a directory", "pass a file name, e.g. report.json")


def write_output(output: Path, text: str) -> None:
    """Write ``--output`` as UTF-8; one-line error if the folder is missing or read-only."""
    from deadrelu.errors import ConfigError

    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --output {output}: {exc.strerror or exc}",
                          "check that the folder exists and is writable") from exc


def exclude_layers(report: Report, config: Config) -> Report:
    """Drop findings on layers that ``exclude-layers`` in ``[tool.deadrelu]`` leaves out.

    Rule selection (``select``/``ignore``/``per-layer-ignores``) happens inside the scan
    (see :meth:`ScanSettings.scan_kwargs`), so it survives merges and re-diagnosis.
    """
    import fnmatch
    from dataclasses import replace

    globs = config.exclude_layers
    if not globs or not report.findings:
        return report
    findings = tuple(f for f in report.findings
                     if f.layer is None or not any(fnmatch.fnmatchcase(f.layer, g) for g in globs))
    return report if len(findings) == len(report.findings) else replace(report, findings=findings)


def load_and_scan(
    opts: LoadOptions,
    settings: ScanSettings,
    *,
    progress: bool,
    quiet: bool,
    partial_on_interrupt: bool = True,
    sharded: bool = False,
) -> Report:
    """Load the model and data of ``opts``, then :func:`run_scan` them with ``settings``.

    The one path from command-line options to a report that ``scan`` and ``check``
    share. ``sharded``: under torchrun, scan this rank's share of the batches on this
    rank's device.
    """
    from deadrelu import distributed

    loaded, source = load_model_and_data(opts)
    freeze_gc()
    return run_scan(
        loaded.model, distributed.shard(source) if sharded else source,
        thresholds=settings.thresholds, progress=progress, quiet=quiet,
        device=(distributed.device_for_scan() if sharded else None) or settings.device,
        model_name=loaded.description, data_name=source.description,
        notes=[*loaded.notes, *source.notes], limit=opts.limit,
        partial_on_interrupt=partial_on_interrupt, **settings.scan_kwargs(),
    )
