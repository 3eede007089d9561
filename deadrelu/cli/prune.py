"""``deadrelu prune``: scan a model, remove the units that were constant, save the smaller model.

A thin shell: loading and scanning are shared with ``scan`` (:mod:`deadrelu.cli.settings`,
:mod:`deadrelu.cli.running`: the same model and data forms), pruning is :func:`deadrelu.prune`, saving is
:mod:`deadrelu.fix.persist`. The result table goes to stdout (``--json`` for
machines), progress and notes to stderr. Exit 0 when something was pruned and
verified, 2 on an error (nothing to prune included); the input is never written.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deadrelu.cli.options import (
    OUTPUT_PANEL,
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    ChannelsOpt,
    ConfigOpt,
    DataOpt,
    DebugOpt,
    DeviceOpt,
    ImageSizeOpt,
    ImportPathOpt,
    LimitOpt,
    ModelArg,
    NoProgressOpt,
    NormalizeOpt,
    QuietOpt,
    TargetOpt,
    TrustCheckpointOpt,
)

if TYPE_CHECKING:
    from deadrelu.errors import ModelError
    from deadrelu.fix.prune import PruneResult

PRUNE_PANEL = "Pruning"


class SaveFormat(str, Enum):
    """How the pruned model is written."""

    model = "model"
    state_dict = "state-dict"


OutOpt = Annotated[Path, typer.Option(
    "--output", "-o", metavar="OUT", show_default=False, rich_help_panel=OUTPUT_PANEL,
    help="Where to write the pruned model (never the input file).",
)]
SaveFormatOpt = Annotated[SaveFormat, typer.Option(
    "--format", "-f", metavar="FORMAT", case_sensitive=False, rich_help_panel=OUTPUT_PANEL,
    help="model: the whole model, pickled (torch.load(weights_only=False) and `deadrelu scan "
         "OUT` load it); state-dict: OUT as safetensors plus OUT's stem + .plan.json with the "
         "new widths, for deadrelu.load_pruned(fresh_model, OUT).",
)]
LayersOpt = Annotated[list[str] | None, typer.Option(
    "--layers", metavar="GLOB", show_default=False, rich_help_panel=PRUNE_PANEL,
    help="Prune only activation layers matching this glob (repeatable) \\[default: all].",
)]
MinSamplesOpt = Annotated[int, typer.Option(
    "--min-samples", metavar="N", rich_help_panel=PRUNE_PANEL,
    help="Refuse to prune on fewer scanned samples (a unit unseen in n samples may still fire "
         "on up to ~3/n of inputs).",
)]
ToleranceOpt = Annotated[float, typer.Option(
    "--tolerance", metavar="REL", rich_help_panel=PRUNE_PANEL,
    help="Largest output change accepted, relative to the largest |output|; above it "
         "nothing is pruned.",
)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", rich_help_panel=OUTPUT_PANEL, help="Print the result as JSON on stdout.",
)]

HELP = """
Remove the units that output one exact constant on the data (dead ReLUs, ReLU6 stuck at 6).

Scans MODEL on --data, removes those units from every layer their channel
passes through (residual adds, BatchNorm, depthwise convs, flatten, gated
products), folds their constant into the biases of the layers that read them,
and checks on the same data that the outputs did not change (else nothing is
pruned and the error names the layer). Units that cannot go exactly are listed
with the reason. Needs torch-pruning: pip install 'deadrelu\\[prune]'.

[bold]Example[/bold]:

  deadrelu prune sample_models/mlp_high_lr.pt \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy -o mlp_pruned.pt
"""


def register(app: typer.Typer) -> None:
    """Add the ``prune`` command to ``app``."""
    from deadrelu.cli.help import Command

    app.command("prune", cls=Command, help=HELP, no_args_is_help=True,
                rich_help_panel=None)(prune_command)


def prune_command(
    model: ModelArg,
    *,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    import_path: ImportPathOpt = None,
    trust_checkpoint: TrustCheckpointOpt = False,
    device: DeviceOpt = None,
    data: DataOpt,
    batch_size: BatchSizeOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    normalize: NormalizeOpt = None,
    channels: ChannelsOpt = None,
    target: TargetOpt = None,
    config: ConfigOpt = None,
    layers: LayersOpt = None,
    min_samples: MinSamplesOpt = 100,
    tolerance: ToleranceOpt = 1e-5,
    output: OutOpt,
    save_format: SaveFormatOpt = SaveFormat.model,
    json_output: JsonOpt = False,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # ``debug`` is read by deadrelu.cli.main before parsing; declared here for --help.
    params = dict(locals())  # the options, read by name (deadrelu.cli.settings)
    import json
    import sys

    from deadrelu.cli.console import warnings_to_stderr
    from deadrelu.cli.outputs import guard_paths
    from deadrelu.cli.running import run_scan
    from deadrelu.cli.settings import command_settings, load_options
    from deadrelu.errors import ConfigError
    from deadrelu.fix import persist
    from deadrelu.fix.depgraph import torch_pruning
    from deadrelu.fix.prune import prune
    from deadrelu.loading import load_model_and_data

    if min_samples < 0:
        raise ConfigError(f"--min-samples {min_samples} is negative", "pass 0 or more")
    if not 0 < tolerance < 1:
        raise ConfigError(f"--tolerance {tolerance} is outside (0, 1)", "e.g. --tolerance 1e-5")
    torch_pruning()  # a missing extra is one line before any loading
    with warnings_to_stderr(quiet):
        settings = command_settings(params)
        opts = load_options(params, settings.config)
        plan_file = persist.plan_path(output) if save_format is SaveFormat.state_dict else None
        guard_paths(opts.input_paths(), {"--output": output, "--output (its widths file)": plan_file},
                    streams=[opts.config_file])
        loaded, source = load_model_and_data(opts)
        report = run_scan(
            loaded.model, source, thresholds=settings.thresholds, progress=not no_progress,
            quiet=quiet, device=settings.device, model_name=loaded.description,
            data_name=source.description, limit=opts.limit, partial_on_interrupt=False,
            **settings.scan_kwargs(),
        )
        pruned, result = prune(loaded.model, report, source, layers=layers,
                               min_samples=min_samples, tolerance=tolerance,
                               batch_size=opts.batch_size)
    if not result.removed:
        raise _nothing_to_prune(model, result)
    notes = _save(pruned, result, output, save_format)
    if json_output:
        sys.stdout.write(json.dumps({**result.to_dict(), "output": str(output)}) + "\n")
    elif quiet:
        from deadrelu.fix.render import summary_lines

        sys.stdout.write(summary_lines(result)[0] + "\n")
    else:
        from rich.console import Console

        Console(highlight=False).print(result)
    if not quiet:
        for note in notes:
            sys.stderr.write(note + "\n")


def _nothing_to_prune(model: Path, result: PruneResult) -> ModelError:
    """The error when no unit could go exactly, with the most common reason units were kept."""
    from deadrelu.errors import ModelError

    counts: dict[str, int] = {}
    for k in result.kept:
        counts[k.reason] = counts.get(k.reason, 0) + len(k.units)
    common = max(counts, key=lambda reason: counts[reason]) if counts else None
    why = f"; kept {result.units_kept} unit(s), most because {common}" if common else ""
    return ModelError(f"nothing to prune: no unit of {model} can be removed exactly{why}",
                      "scan it (`deadrelu scan`) to see its dead units; only units that "
                      "output one constant on the data can be pruned")


def _save(pruned: Any, result: PruneResult, output: Path, save_format: SaveFormat) -> list[str]:
    """Write the pruned model in ``save_format``; returns the notes saying what was written."""
    from deadrelu.fix import persist

    if save_format is SaveFormat.state_dict:
        plan = persist.save_state_dict(pruned, output, result.widths)
        return [f"wrote {output} (weights) and {plan} (new widths): "
                "deadrelu.load_pruned(fresh_model, path) rebuilds it"]
    return [f"wrote the pruned model to {output}", *persist.save_model(pruned, output)]
