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
         "torch.export file (.pt, .pth, .bin, .ckpt, .pt2, .safetensors), or a Hugging Face "
         "save_pretrained directory (config.json + weights; the config.json itself works too).",
)]
DataOpt = Annotated[str, typer.Option(
    "--data", "-d", metavar="PATH", show_default=False, rich_help_panel=DATA_PANEL,
    help="Data to run through the model: a folder of images (flat or one folder per class), "
         "an image, a .pt/.npy/.npz/.safetensors tensor file or folder, a .csv/.parquet table, "
         "text (.txt one example per line, .jsonl/.json records, or a table's text column; "
         "tokenized with the model directory's tokenizer), "
         "or module:function / file.py:function returning batches (a DataLoader works).",
)]
ArchOpt = Annotated[str | None, typer.Option(
    "--arch", metavar="MODULE:CLASS", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Class or factory that builds the model, for files holding only weights "
         "(state dicts, safetensors): package.module:Class or path/to/file.py:Class. For a model "
         "directory: the transformers class to build (the head), as transformers:NAME "
         "\\[default: the config's architectures].",
)]
#: ``track`` reuses one model for a series of weight files: no model directories (yet).
WeightsArchOpt = Annotated[str | None, typer.Option(
    "--arch", metavar="MODULE:CLASS", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Class or factory that builds the model, for files holding only weights "
         "(state dicts, safetensors): package.module:Class or path/to/file.py:Class.",
)]
WeightsTrustOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", rich_help_panel=MODEL_PANEL,
    help="Load the model file with torch's own, unchecked loaders (torch.load "
         "weights_only=False, torch.export.load). This runs code stored in the file: only for "
         "files you trust.",
)]
DtypeOpt = Annotated[str | None, typer.Option(
    "--dtype", metavar="DTYPE", show_default=False, rich_help_panel=MODEL_PANEL,
    help="Floating dtype for the weights: float32, float16 or bfloat16 (model directories are "
         "materialised once, in this dtype) \\[default: as saved].",
)]
DeviceMapOpt = Annotated[str | None, typer.Option(
    "--device-map", metavar="MAP", show_default=False,
    rich_help_panel=MODEL_PANEL,
    help="Model directories: spread the layers over the GPUs (and CPU) with accelerate: auto, "
         "balanced or sequential; each layer's counters stay on its device.",
)]
CenterCropOpt = Annotated[str | None, typer.Option(
    "--center-crop", metavar="H|HxW", show_default=False, rich_help_panel=DATA_PANEL,
    help="The usual eval transform for images: resize the short side to the crop / 0.875, "
         "then crop the centre to H×H or H×W (keeps the aspect ratio; --image-size squashes). "
         "A model directory's preprocessor_config.json is used when neither is given.",
)]
TokenizerOpt = Annotated[Path | None, typer.Option(
    "--tokenizer", metavar="DIR", show_default=False, rich_help_panel=DATA_PANEL,
    help="Tokenizer directory for text data \\[default: the model directory's own].",
)]
TextColumnOpt = Annotated[str | None, typer.Option(
    "--text-column", metavar="NAME", show_default=False, rich_help_panel=DATA_PANEL,
    help="Field or column holding the text in .jsonl/.json/.csv/.parquet data "
         "\\[default: the only string column].",
)]
MaxLengthOpt = Annotated[int | None, typer.Option(
    "--max-length", metavar="N", show_default=False, rich_help_panel=DATA_PANEL,
    help="Cut text sequences to N tokens \\[default: the model's limit].",
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
         "weights_only=False, torch.export.load), or run the custom code a model directory's "
         "config names (trust_remote_code). This runs code stored with the model: only for "
         "files you trust.",
)]
class CompareInit(str, Enum):
    """When to scan freshly initialized copies (see :mod:`deadrelu.init_compare`)."""

    auto = "auto"
    on = "on"
    off = "off"

    def wanted(self) -> bool | None:
        """``True``/``False`` for on/off, ``None`` for auto (when cheap)."""
        return None if self is CompareInit.auto else self is CompareInit.on


CompareInitOpt = Annotated[CompareInit, typer.Option(
    "--compare-init", rich_help_panel=MODEL_PANEL, case_sensitive=False,
    help="Scan freshly initialized copies on the same data to tell units dead from "
         "initialization from units killed by training; auto: when the model can be "
         "re-initialized, has ≤5M parameters and ≤20,000 samples.",
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
    tokenizer: Path | None = None
    text_column: str | None = None
    max_length: int | None = None
    dtype: str | None = None
    device_map: str | None = None
    device: str | None = None  # where a model directory's weights are materialised
    center_crop: str | None = None
    normalize_given: bool = False  # --normalize was on the command line (even as "none")

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
        tokenizer: Path | None = None,
        text_column: str | None = None,
        max_length: int | None = None,
        dtype: str | None = None,
        device_map: str | None = None,
        device: str | None = None,
        center_crop: str | None = None,
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
            image_size=image_size, normalize=normalize or "none", normalize_given=normalize is not None,
            target=target, channels=channels,
            config_file=config.source if config is not None else None,
            tokenizer=tokenizer, text_column=text_column, max_length=max_length, dtype=dtype,
            device_map=device_map, device=device, center_crop=center_crop,
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
        if self.tokenizer is not None:
            paths.append(self.tokenizer)
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
    from deadrelu.loading.hf import hf_directory

    # Decided from the file's content, before any torch loader runs: loading a
    # TorchScript archive runs its code, and it could not be scanned anyway.
    if hf_directory(opts.model) is None and sniff_format(opts.model) == "torchscript":
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
        dtype=opts.dtype, device_map=_device_map(opts),
    )
    if opts.dtype is not None and loaded.format != "transformers":
        from deadrelu.loading.hf import _dtype

        loaded.model.to(_dtype(opts.dtype))
    channels = opts.channels
    if channels is None and _looks_like_images(opts.data):
        channels = _suggest_image_channels(loaded.model, Path(opts.data))
    tokenizer, model_limit = _tokenizer_for(opts, loaded)
    transform, normalize = _image_transform(opts, loaded)
    extractor = _feature_extractor(opts, loaded)
    source = open_data(
        opts.data, batch_size=opts.batch_size, limit=opts.limit, image_size=opts.image_size,
        normalize=normalize, target=opts.target, channels=channels,
        import_paths=opts.import_paths, tokenizer=tokenizer, text_column=opts.text_column,
        max_length=opts.max_length, model_max_length=model_limit, transform=transform,
        feature_extractor=extractor,
    )
    if source.sample_shape is not None:
        check_fit(loaded.model, source.sample_shape, opts.batch_size, source.num_samples)
    return loaded, source


def _device_map(opts: LoadOptions) -> Any:
    """Where a model directory's weights are materialised: ``--device-map``, else the
    scan's device (so a GPU scan never holds a CPU copy first), else the CPU."""
    if opts.device_map is not None:
        return opts.device_map
    if opts.device in (None, "auto"):
        import torch

        return "cuda" if opts.device == "auto" and torch.cuda.is_available() else None
    return opts.device


def _feature_extractor(opts: LoadOptions, loaded: LoadedModel) -> Any:
    """A model directory's audio feature extractor, for ``.wav``/``.flac`` ``--data``."""
    from deadrelu.loading.audio import AUDIO_SUFFIXES, list_audio, load_feature_extractor

    data = Path(opts.data)
    is_audio = (data.suffix.lower() in AUDIO_SUFFIXES if data.is_file()
                else data.is_dir() and not _looks_like_images(opts.data) and bool(list_audio(data)))
    if loaded.format != "transformers" or not is_audio:
        return None
    from deadrelu.loading.hf import hf_directory

    folder = hf_directory(opts.model)
    return load_feature_extractor(folder) if folder is not None else None


def _image_transform(opts: LoadOptions, loaded: LoadedModel) -> tuple[Any, str | None]:
    """The eval transform for image ``--data`` and the normalisation to use with it.

    ``--center-crop`` wins; else a model directory's ``preprocessor_config.json``
    (size, crop, and its mean/std unless ``--normalize`` is given), unless
    ``--image-size`` asks to squash instead; else none (the flags as they are).
    """
    from deadrelu.loading.preprocess import from_preprocessor_config, parse_crop

    normalize = opts.normalize
    if opts.center_crop is not None:
        return parse_crop(opts.center_crop), normalize
    if loaded.format != "transformers" or opts.image_size is not None \
            or not _looks_like_images(opts.data):
        return None, normalize
    from deadrelu.loading.hf import hf_directory

    folder = hf_directory(opts.model)
    transform = from_preprocessor_config(folder) if folder is not None else None
    if transform is not None and normalize in (None, "none") and not opts.normalize_given:
        normalize = transform.normalize_spec() or normalize
    return transform, normalize


def _tokenizer_for(opts: LoadOptions, loaded: LoadedModel) -> tuple[Any, int | None]:
    """The tokenizer for text ``--data`` (``--tokenizer``, else the model directory's own),
    and the model's sequence limit; ``(None, None)`` when the data is not text."""
    from deadrelu.loading.hf import hf_directory
    from deadrelu.loading.text import is_saved_dataset, is_text_file, load_tokenizer

    data = Path(opts.data)
    is_dir_model = loaded.format == "transformers"
    known = opts.tokenizer is not None or is_dir_model
    if not (data.is_file() or is_saved_dataset(data)) or not is_text_file(
            data, tokenizer_known=known, text_column=opts.text_column):
        return None, None
    source = opts.tokenizer or (hf_directory(opts.model) if is_dir_model else None)
    if source is None:
        return None, None  # open_data says that text needs a tokenizer
    config = getattr(loaded.model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return load_tokenizer(source, trust_checkpoint=opts.trust_checkpoint), limit


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
                if (entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".")
                        and entry.is_file()):  # never open a FIFO: open_data refuses it
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
    "CenterCropOpt", "DeviceMapOpt", "DtypeOpt", "ImportPathOpt", "LimitOpt", "MaxLengthOpt", "TextColumnOpt",
    "TokenizerOpt", "WeightsArchOpt", "WeightsTrustOpt", "freeze_gc", "LoadOptions", "ModelArg", "NoProgressOpt", "NormalizeOpt",
    "OutputFormat", "OutputOpt", "QuietOpt", "RareOpt", "SaturatedOpt", "ScanSettings",
    "TargetOpt", "TauOpt", "TrustCheckpointOpt", "load_config_file", "load_model_and_data",
    "load_settings", "parse_arch_kwargs", "parse_share", "run_scan", "stderr_console",
    "warnings_to_stderr",
]


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
    compare_init: bool | None = None,
) -> Report:
    """Load the model and data of ``opts``, then :func:`run_scan` them with ``settings``.

    The one path from command-line options to a report that ``scan`` and ``check``
    share. ``sharded``: under torchrun, scan this rank's share of the batches on this
    rank's device. ``compare_init``: also scan freshly initialized copies on the same
    data (:mod:`deadrelu.init_compare`); ``None``: when the architecture can be
    instantiated and that is cheap.
    """
    from deadrelu import distributed

    loaded, source = load_model_and_data(opts)
    freeze_gc()
    notes = [*loaded.notes, *source.notes]
    init = None
    if compare_init is not False and not sharded:
        init, note = _init_baseline(loaded, source, opts, settings, explicit=bool(compare_init))
        notes += [note] if note else []
    return run_scan(
        loaded.model, distributed.shard(source) if sharded else source,
        thresholds=settings.thresholds, progress=progress, quiet=quiet,
        device=(distributed.device_for_scan() if sharded else None) or settings.device,
        model_name=loaded.description, data_name=source.description,
        notes=notes, limit=opts.limit, recipe=loaded.recipe, init=init,
        partial_on_interrupt=partial_on_interrupt, **settings.scan_kwargs(),
    )


def _init_baseline(loaded: LoadedModel, source: Any, opts: LoadOptions, settings: ScanSettings,
                   *, explicit: bool) -> tuple[dict[str, Any] | None, str | None]:
    """Dead units of freshly initialized copies on the same data (``meta["init"]``), when
    the architecture can be instantiated and (unless ``explicit``) that is cheap; else
    ``None`` and, when it was asked for, a note saying why not."""
    from deadrelu.init_compare import init_baseline, is_cheap
    from deadrelu.scanning import scan

    if loaded.format in ("export", "torchscript"):
        return None, (f"--compare-init: a {loaded.format} program cannot be re-initialized; "
                      "scan the original nn.Module checkpoint to compare with a fresh init"
                      if explicit else None)
    samples = source.num_samples
    if samples is not None and opts.limit is not None:
        samples = min(samples, opts.limit)
    if not explicit and not is_cheap(loaded.model, samples):
        return None, None
    factory = None
    if loaded.format == "transformers":
        # the class and config the directory named; --arch there picks a head, not a
        # constructor. from_config draws the model's own initialization (_init_weights).
        cls: Any = type(loaded.model)
        config = loaded.model.config

        def factory() -> Any:
            return cls._from_config(config)
    elif opts.arch is not None:
        from deadrelu.loading.checkpoint import build_arch

        arch, arch_kwargs, paths = opts.arch, opts.arch_kwargs, opts.import_paths

        def factory() -> Any:
            return build_arch(arch, arch_kwargs, import_paths=paths)

    kwargs = settings.scan_kwargs()

    def scan_fresh(model: Any) -> Report:
        with warnings.catch_warnings():  # the trained model's scan warns about the data
            warnings.simplefilter("ignore")
            return scan(model, source, limit=opts.limit, thresholds=settings.thresholds,
                        device=settings.device, **kwargs)

    return init_baseline(loaded.model, scan_fresh, factory=factory), None
