"""The option declarations shared by the commands that load a model and scan data.

``Annotated`` typer aliases (``ModelArg``, ``DataOpt``, ``RareOpt``...) and the enums
behind their choices, so every command (``scan``, ``check``, ``track``, ``prune``)
spells an option the same way, with the same help and help panel. Declarations
only: values a user can get wrong (shares, JSON, sizes) arrive as strings and are
parsed by :mod:`deadrelu.cli.settings` into one-line
:class:`~deadrelu.errors.ConfigError` messages, instead of click's multi-line usage
errors. The rest of the command-line glue lives in small modules by job:

* :mod:`deadrelu.cli.settings`: flags + ``[tool.deadrelu]`` → ``ScanSettings`` and
  :class:`~deadrelu.loading.LoadOptions`;
* :mod:`deadrelu.cli.running`: the scan with a progress bar on stderr;
* :mod:`deadrelu.cli.console`: warnings as one line each on stderr;
* :mod:`deadrelu.cli.outputs`: the check and the write of output files.

Loading itself (:func:`deadrelu.loading.load_model_and_data`) and ``exclude-layers``
(:func:`deadrelu.scan`) are library code.

Only typer (and the standard library) is imported at module level: ``deadrelu
--help`` must answer without importing torch, pandas or rich tables.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

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
