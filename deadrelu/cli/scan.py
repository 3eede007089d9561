"""``deadrelu scan``: load a model, run data through it once, print the report.

A thin shell: loading is :func:`deadrelu.loading.load_model_and_data`, the
scan is :func:`deadrelu.scan` (through :mod:`deadrelu.cli.running`), the output is :mod:`deadrelu.render` /
:mod:`deadrelu.export`. The report goes to stdout, everything else (progress,
warnings, errors) to stderr, so ``--format json`` can be piped. ``scan`` never
gates: it exits 0 whatever it finds (``deadrelu check`` is the gating command),
2 on an error, 130 when Ctrl-C cut the scan short (after printing the partial report).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from deadrelu.cli.options import (
    AlwaysOnOpt,
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    CenterCropOpt,
    ChannelsOpt,
    CompareInit,
    CompareInitOpt,
    ConfigOpt,
    DataOpt,
    DebugOpt,
    DeviceMapOpt,
    DeviceOpt,
    DormancyOpt,
    DtypeOpt,
    FormatOpt,
    IgnoreOpt,
    ImageSizeOpt,
    ImportPathOpt,
    LimitOpt,
    MaxLengthOpt,
    ModelArg,
    NoProgressOpt,
    NormalizeOpt,
    OutputFormat,
    OutputOpt,
    QuietOpt,
    RareOpt,
    SaturatedOpt,
    SelectOpt,
    TargetOpt,
    TauOpt,
    TextColumnOpt,
    TokenizerOpt,
    TrustCheckpointOpt,
)

if TYPE_CHECKING:
    from deadrelu.report import Report

#: Exit code when Ctrl-C stopped the scan (the partial report is still printed).
EXIT_INTERRUPTED = 130

HELP = """
Scan a trained model for dead, rare, always-on and saturated units.

Loads MODEL, runs --data through it once in eval mode (no gradients, weights
untouched), and reports per activation layer how many units never fired, with
the likely causes and fixes. The report goes to stdout; progress and warnings
go to stderr. Exits 0 whatever it finds (use `deadrelu check` to gate CI),
2 on an error, 130 if interrupted (the partial report is printed first).

[bold]Examples[/bold] (with the sample models shipped in the repository):

[dim]# a state dict: --arch names the class that builds the model[/dim]
  deadrelu scan sample_models/mlp_high_lr.pt \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy

[dim]# a whole-model pickle whose class lives beside it; a folder of PNGs[/dim]
  deadrelu scan sample_models/cnn_full.pt --import-path sample_models \\
      --data sample_models/data/digits_png

[dim]# safetensors weights; the full report as JSON[/dim]
  deadrelu scan sample_models/mlp_healthy.safetensors \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npz --format json > report.json

[dim]# one offline HTML page with charts, to open in a browser[/dim]
  deadrelu scan sample_models/mlp_high_lr.pt \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy --format html -o report.html

[dim]# a Hugging Face model directory; text, one example per line[/dim]
  deadrelu scan sample_models/tiny_lm \\
      --data sample_models/data/tiny_lm_text.txt

[dim]# your own model: images resized and normalised, Markdown to a file[/dim]
  deadrelu scan model.pt \\
      --arch mypkg.nets:ResNet --arch-kwargs '{"depth": 18}' \\
      --data images/ --image-size 224 --normalize imagenet \\
      --format markdown --output report.md
"""


def register(app: typer.Typer) -> None:
    """Add the ``scan`` command to ``app``."""
    from deadrelu.cli.help import Command

    app.command("scan", cls=Command, help=HELP, no_args_is_help=True,
                rich_help_panel=None)(scan_command)


def scan_command(
    model: ModelArg,
    *,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    import_path: ImportPathOpt = None,
    trust_checkpoint: TrustCheckpointOpt = False,
    compare_init: CompareInitOpt = CompareInit.auto,
    device: DeviceOpt = None,
    data: DataOpt,
    batch_size: BatchSizeOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    center_crop: CenterCropOpt = None,
    normalize: NormalizeOpt = None,
    channels: ChannelsOpt = None,
    target: TargetOpt = None,
    tokenizer: TokenizerOpt = None,
    text_column: TextColumnOpt = None,
    max_length: MaxLengthOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
    config: ConfigOpt = None,
    rare: RareOpt = None,
    always_on: AlwaysOnOpt = None,
    saturated: SaturatedOpt = None,
    dormancy: DormancyOpt = None,
    tau: TauOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    output_format: FormatOpt = OutputFormat.table,
    output: OutputOpt = None,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # ``debug`` is read by deadrelu.cli.main before parsing; declared here for --help.
    params = dict(locals())  # the options, read by name (deadrelu.cli.settings)
    from deadrelu import distributed
    from deadrelu.cli.console import warnings_to_stderr
    from deadrelu.cli.outputs import guard_paths
    from deadrelu.cli.running import load_and_scan
    from deadrelu.cli.settings import command_settings, load_options

    # Under torchrun (WORLD_SIZE > 1) every rank joins the process group and scans every
    # WORLD_SIZE-th batch; scan() reduces the counters across ranks and rank 0 prints.
    with distributed.process_group_from_env() as sharded, \
            warnings_to_stderr(quiet or not distributed.is_main_process()):
        main_rank = distributed.is_main_process()
        settings = command_settings(params)
        opts = load_options(params, settings.config, device=settings.device)
        if main_rank:
            guard_paths(opts.input_paths(), {"--output": output}, streams=[opts.config_file])
        report = load_and_scan(opts, settings, progress=not no_progress and main_rank,
                               quiet=quiet, sharded=sharded, compare_init=compare_init.wanted())
    if not main_rank:
        return
    emit(report, output_format, output=output, quiet=quiet)
    if report.partial:
        from deadrelu.cli import errors

        errors.interrupt_reported = True
        raise typer.Exit(EXIT_INTERRUPTED)


def emit(report: Report, output_format: OutputFormat, *, output: Path | None, quiet: bool) -> None:
    """Print and/or write the report in ``output_format`` (see the module docstring)."""
    import sys

    if output is not None:
        from deadrelu.cli.outputs import write_output

        text = render_text(report, output_format, width=120)
        write_output(output, text)
        if not quiet:
            print_table(report)
            sys.stderr.write(f"wrote {output_format.value} report to {output}\n")
        elif report.partial:
            _partial_warning(report)
        return
    if output_format is OutputFormat.table:
        if quiet:
            from deadrelu.render import summary_line

            sys.stdout.write(summary_line(report) + "\n")
        else:
            print_table(report)
    else:
        sys.stdout.write(render_text(report, output_format))
        if report.partial:
            _partial_warning(report)


def _partial_warning(report: Report) -> None:
    import sys

    sys.stderr.write(f"warning: interrupted: the report covers only the first "
                     f"{report.samples:,} samples\n")


def print_table(report: Report) -> None:
    """The rich report on stdout."""
    from rich.console import Console

    Console(highlight=False).print(report)


def render_text(report: Report, output_format: OutputFormat, *, width: int = 100) -> str:
    """The report as text in ``output_format`` (the table without colour codes)."""
    from deadrelu import export

    if output_format is OutputFormat.json:
        return export.to_json(report)
    if output_format is OutputFormat.csv:
        return export.to_csv(report)
    if output_format is OutputFormat.markdown:
        return export.to_markdown(report)
    if output_format is OutputFormat.html:
        from deadrelu.html import report_page

        return report_page(report)
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False,
            highlight=False).print(report)
    # rich pads table rows to the console width; a file should not carry that padding
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


