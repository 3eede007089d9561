"""``deadrelu track``: dead units across a run's checkpoints, and when they died.

A thin shell over :func:`deadrelu.track_checkpoints.track`: checkpoints are found and
ordered by :func:`deadrelu.track_checkpoints.discover`, the first one is loaded with the
same options as ``scan`` (:mod:`deadrelu.cli.settings`) to build the one model
instance, and every checkpoint's weights are loaded into it in turn. A run of
``checkpoint-*/`` model directories loads each directory with those same options
(``--dtype``, ``--device-map``...) and tokenizes text with each one's own tokenizer
(:class:`RunLoader`). Exits 0 (2 on an error); it reports, it does not gate.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deadrelu.cli.options import (
    ArchKwargsOpt,
    ArchOpt,
    BatchSizeOpt,
    ChannelsOpt,
    ConfigOpt,
    DataOpt,
    DebugOpt,
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    ImageSizeOpt,
    ImportPathOpt,
    LimitOpt,
    MaxLengthOpt,
    NoProgressOpt,
    NormalizeOpt,
    OutputOpt,
    QuietOpt,
    TargetOpt,
    TextColumnOpt,
    TokenizerOpt,
    WeightsTrustOpt,
)

if TYPE_CHECKING:
    from deadrelu.loading.checkpoint import LoadedModel
    from deadrelu.loading.options import LoadOptions
    from deadrelu.loading.source import DataSource
    from deadrelu.track_checkpoints import Trend

OUTPUT_PANEL = "Output"


class TrackFormat(str, Enum):
    """What ``track`` prints on stdout."""

    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


CheckpointsArg = Annotated[str, typer.Argument(
    metavar="DIR_OR_GLOB", show_default=False,
    help="A folder of checkpoints (step_100.pt, epoch-3.ckpt, ckpt_000500.pt...), a Hugging Face "
         "Trainer's output_dir (checkpoint-500/ model directories), or a quoted glob such as "
         "'runs/a/step_*.pt'; ordered by the step or epoch number in the names.",
)]
JumpOpt = Annotated[str, typer.Option(
    "--jump", metavar="PP", rich_help_panel="Trend",
    help="A rise in a layer's dead fraction of at least this many percentage points between "
         "consecutive checkpoints counts as a jump: 5, 5pp or 5%.",
)]
CsvOpt = Annotated[Path | None, typer.Option(
    "--csv", metavar="FILE", show_default=False, rich_help_panel=OUTPUT_PANEL,
    help="Write the trend (one row per checkpoint and layer) as CSV.",
)]
JsonOpt = Annotated[Path | None, typer.Option(
    "--json", metavar="FILE", show_default=False, rich_help_panel=OUTPUT_PANEL,
    help="Write the trend, jumps and units that died as JSON.",
)]
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", metavar="FILE.png|svg|pdf", show_default=False, rich_help_panel=OUTPUT_PANEL,
    help="Draw dead fraction per layer against step (needs pip install 'deadrelu\\[plot]').",
)]
TrackFormatOpt = Annotated[TrackFormat, typer.Option(
    "--format", "-f", metavar="FORMAT", case_sensitive=False, rich_help_panel=OUTPUT_PANEL,
    help="table: trend table, jumps and units that died; json / csv: only that on stdout; "
         "html: one offline page with the trend chart and the last checkpoint's report "
         "(use with --output trend.html).",
)]

HELP = """
Scan every checkpoint of a training run and show when units died.

Orders the checkpoints in DIR_OR_GLOB by the step/epoch number in their names,
loads each into one model instance (model directories: each its own), scans --data with it, and prints the dead
fraction of every layer per step, the first step where each layer jumped, and
which units died between consecutive checkpoints.

[bold]Examples[/bold]

[dim]# the sample run in the repository: a learning-rate spike after step 300[/dim]
  deadrelu track sample_models/series \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy --plot trend.png

[dim]# Lightning checkpoints, trend written for a notebook[/dim]
  deadrelu track 'lightning_logs/version_0/checkpoints/*.ckpt' \\
      --arch mypkg.nets:Net --data val/ --csv trend.csv --json trend.json

[dim]# one offline HTML page: trend chart, jumps, the last checkpoint's report[/dim]
  deadrelu track sample_models/series \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy --format html -o trend.html
"""


def register(app: typer.Typer) -> None:
    """Add the ``track`` command to ``app``."""
    from deadrelu.cli.help import Command

    app.command("track", cls=Command, help=HELP, no_args_is_help=True,
                rich_help_panel=None)(track_command)


def track_command(
    checkpoints: CheckpointsArg,
    *,
    arch: ArchOpt = None,
    arch_kwargs: ArchKwargsOpt = None,
    import_path: ImportPathOpt = None,
    trust_checkpoint: WeightsTrustOpt = False,
    device: DeviceOpt = None,
    data: DataOpt,
    batch_size: BatchSizeOpt = None,
    limit: LimitOpt = None,
    image_size: ImageSizeOpt = None,
    normalize: NormalizeOpt = None,
    channels: ChannelsOpt = None,
    target: TargetOpt = None,
    tokenizer: TokenizerOpt = None,
    text_column: TextColumnOpt = None,
    max_length: MaxLengthOpt = None,
    dtype: DtypeOpt = None,
    device_map: DeviceMapOpt = None,
    jump: JumpOpt = "5pp",
    config: ConfigOpt = None,
    output_format: TrackFormatOpt = TrackFormat.table,
    output: OutputOpt = None,
    csv: CsvOpt = None,
    json: JsonOpt = None,
    plot: PlotOpt = None,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # ``debug`` is read by deadrelu.cli.main before parsing; declared here for --help.
    params = dict(locals())  # the options, read by name (deadrelu.cli.settings)
    import functools
    import sys

    from deadrelu.cli.console import warnings_to_stderr
    from deadrelu.cli.outputs import guard_paths
    from deadrelu.cli.running import run_scan
    from deadrelu.cli.settings import command_settings, load_options
    from deadrelu.loading import load_model_and_data
    from deadrelu.track_checkpoints import discover, track

    with warnings_to_stderr(quiet):
        settings = command_settings(params)
        min_jump = _check_options(jump, plot)  # before scanning every checkpoint
        found, notes = discover(checkpoints)
        opts = load_options(params, settings.config, model=found[0].path, device=settings.device)
        guard_paths([*opts.input_paths(), *(c.path for c in found)],
                    {"--csv": csv, "--json": json, "--plot": plot, "--output": output},
                    streams=[opts.config_file])
        loaded, source = load_model_and_data(opts)
        run = RunLoader(opts, loaded, source)

        def announce(index: int, total: int, ckpt: Any) -> None:
            if not quiet:
                sys.stderr.write(f"[{index + 1}/{total}] scanning {ckpt.path} (step {ckpt.step})\n")

        scan_fn = functools.partial(
            run_scan, thresholds=settings.thresholds, progress=not no_progress, quiet=quiet,
            device=settings.device, data_name=source.description, limit=opts.limit,
            partial_on_interrupt=False, **settings.scan_kwargs(),
        )
        trend = track(loaded.model, found, source, min_jump=min_jump, arch=arch,
                      trust_checkpoint=trust_checkpoint, import_paths=opts.import_paths,
                      on_checkpoint=announce, scan_fn=scan_fn, load_dir=run.load_dir,
                      data_for=run.data_for)
    notes = [*notes, *run.notes]
    if notes:
        from dataclasses import replace

        trend = replace(trend, notes=(*notes, *trend.notes))
    emit(trend, output_format, str(checkpoints), output=output, csv=csv, json=json, plot=plot,
         quiet=quiet)


class RunLoader:
    """Loads each ``checkpoint-*/`` model directory of a run as its first one was loaded
    (``--dtype``, ``--device-map``, ``--arch``...), and the data to scan it on.

    Text is tokenized with each directory's own tokenizer (``--tokenizer`` overrides
    them all): the data is opened again, with the new tokenizer, only when a
    checkpoint's tokenizer (its files' content) or sequence limit differs from the
    previous checkpoint's, with a note. A directory without a tokenizer is read with
    the previous checkpoint's, with a note. Other data (images, tensors) is opened once.
    """

    def __init__(self, opts: LoadOptions, loaded: LoadedModel, source: DataSource) -> None:
        self.opts = opts
        self.source = source
        self.notes: list[str] = []
        self._tokens_from = opts.model  # the checkpoint whose tokenizer read the data
        self._key = self._data_key(opts, loaded)

    def load_dir(self, path: Path) -> Any:
        """The model of checkpoint directory ``path``; re-opens the data if its tokenizer differs."""
        import dataclasses

        from deadrelu.loading.model_and_data import load_model_of, open_data_for

        opts = dataclasses.replace(self.opts, model=path)
        loaded = load_model_of(opts)
        key = self._data_key(opts, loaded)
        if key is None or key == self._key:
            return loaded.model
        if key[0] is None:  # text, but no tokenizer saved in this checkpoint
            self.notes.append(f"{path.name} has no tokenizer: its text was tokenized with "
                              f"{self._tokens_from.name}'s")
            return loaded.model
        self.source = open_data_for(opts, loaded)
        what = ("tokenizer" if self._key is None or key[0] != self._key[0]
                else "sequence limit (max_position_embeddings)")
        self.notes.append(f"{path.name}'s {what} differs from {self._tokens_from.name}'s: "
                          "its text was tokenized with its own")
        self._tokens_from, self._key = path, key
        return loaded.model

    def data_for(self, path: Path) -> DataSource:
        """The data to scan checkpoint ``path`` on (called after :meth:`load_dir`)."""
        return self.source

    def _data_key(self, opts: LoadOptions, loaded: LoadedModel) -> tuple[str | None, Any] | None:
        """What the text data's tokens depend on: the tokenizer's content and the model's
        sequence limit; ``None`` when ``--tokenizer`` fixes them or the data is not text."""
        from deadrelu.loading.model_and_data import tokenizer_source
        from deadrelu.loading.text import tokenizer_fingerprint

        if opts.tokenizer is not None:
            return None
        folder = tokenizer_source(opts, loaded)
        if folder is None:
            return None
        limit = getattr(getattr(loaded.model, "config", None), "max_position_embeddings", None)
        return tokenizer_fingerprint(folder), limit


def _check_options(jump: str, plot: Path | None) -> float:
    """``--jump`` as a fraction, and ``--plot`` checked (its type, matplotlib installed).

    Raises:
        ConfigError: a jump of 0 or less, an unknown image type, no matplotlib.
    """
    from deadrelu.errors import ConfigError
    from deadrelu.gates import parse_points
    from deadrelu.track_checkpoints import PLOT_SUFFIXES, require_matplotlib

    min_jump = parse_points(jump, option="--jump")
    if min_jump <= 0:
        raise ConfigError("--jump must be above 0", "pass e.g. --jump 5pp")
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot {plot}: unknown image type {plot.suffix or '(none)'}",
                          f"use one of {', '.join(PLOT_SUFFIXES)}")
    if plot is not None:
        require_matplotlib()
    return min_jump


def emit(trend: Trend, output_format: TrackFormat, source: str, *, output: Path | None,
         csv: Path | None, json: Path | None, plot: Path | None, quiet: bool) -> None:
    """Write the files asked for (``--csv``, ``--json``, ``--plot``, ``--output``) and print
    the trend: a machine format on stdout, else the terminal table (summary when ``quiet``)."""
    import sys

    written = []
    if csv is not None:
        written.append(trend.write_csv(csv))
    if json is not None:
        written.append(trend.write_json(json))
    if plot is not None:
        written.append(trend.plot(plot))
    text = _render_text(trend, output_format, source)
    if output is not None:
        from deadrelu.cli.outputs import write_output

        write_output(output, text if text is not None else _plain_table(trend, source))
        written.append(output)
        text = None  # as for scan: the file holds the format, the terminal shows the table
    if text is not None:
        sys.stdout.write(text)
    else:
        from rich.console import Console

        console = Console(highlight=False)
        parts = [trend_summary(trend)] if quiet else trend_parts(trend, source)
        for part in parts:
            console.print(part, soft_wrap=_is_text(part))
    if not quiet:
        for path in written:
            sys.stderr.write(f"wrote {path}\n")


def _render_text(trend: Trend, output_format: TrackFormat, source: str) -> str | None:
    """The trend as text in a machine format, or None for the terminal table."""
    if output_format is TrackFormat.json:
        return trend.to_json()
    if output_format is TrackFormat.csv:
        return str(trend.frame.to_csv(index=False))
    if output_format is TrackFormat.html:
        from deadrelu.html import trend_page

        return trend_page(trend, source)
    return None


def _plain_table(trend: Trend, source: str) -> str:
    """The terminal output without colour, for ``--format table --output FILE``."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None, force_terminal=False,
                      highlight=False)
    for part in trend_parts(trend, source):
        console.print(part, soft_wrap=_is_text(part))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def trend_summary(trend: Trend) -> Any:
    """One line: where units first died, or that none did (the ``--quiet`` output)."""
    from rich.text import Text

    steps = trend.steps
    span = f"{len(steps)} checkpoints, steps {steps[0]}..{steps[-1]}"
    first = trend.first_jump
    if first is None:
        limit = f"{trend.min_jump * 100:g} pp"
        return Text(f"{span}: no layer's dead fraction rose by {limit} or more", style="green")
    layers = sorted({t.layer for t in trend.jumps if (t.from_step, t.to_step) == first})
    where = f" ({', '.join(layers)})" if layers else ""
    return Text(f"{span}: units first died between step {first[0]} and step {first[1]}{where}",
                style="bold red")


def _is_text(part: Any) -> bool:
    from rich.text import Text

    return isinstance(part, Text)


def trend_parts(trend: Trend, source: str) -> list[Any]:
    """The terminal output: header, trend table, jumps, units that died, notes."""
    from rich.table import Table
    from rich.text import Text

    from deadrelu.gates import units_list
    from deadrelu.track_checkpoints import MODEL

    steps = trend.steps
    samples = trend.reports[0].samples if trend.reports else 0
    tokens = sorted({r.meta["tokens"] for r in trend.reports if "tokens" in r.meta})
    seen = (f"{samples:,} samples each" if not tokens
            else f"{samples:,} samples, {tokens[0]:,} tokens each" if len(tokens) == 1
            else f"{samples:,} samples each, {tokens[0]:,} to {tokens[-1]:,} tokens (see the notes)")
    parts: list[Any] = [
        Text.assemble(("deadrelu track", "bold"), "  ", source),
        Text(f"{len(steps)} checkpoints, steps {steps[0]}..{steps[-1]}, {seen}", style="dim"),
        Text(""),
        Text("Dead units per layer (%), by step", style="bold"),
    ]
    jumped = {(t.layer, t.to_step) for t in trend.jumps}
    if trend.model_jump is not None:
        jumped.add((MODEL, trend.model_jump[1]))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("layer")
    for step in steps:
        table.add_column(str(step), justify="right")
    wide = trend.table()
    for layer, row in wide.iterrows():
        cells = []
        for step in steps:
            value = row.get(step)
            text = "-" if value is None or value != value else f"{value * 100:.1f}"
            style = "bold red" if (layer, step) in jumped else ""
            cells.append(Text(text, style=style))
        table.add_row(Text(str(layer), style="bold" if layer == MODEL else ""), *cells)
    parts.append(table)

    parts.append(Text(""))
    limit = f"{trend.min_jump * 100:g} pp"
    if trend.model_jump is None and not trend.jumps:
        parts.append(Text(f"No jumps: no layer's dead fraction rose by {limit} or more between "
                          "consecutive checkpoints.", style="green"))
    else:
        parts.append(Text(f"First jump per layer (dead fraction up by >= {limit} between "
                          "consecutive checkpoints):", style="bold"))
        if trend.model_jump is not None:
            a, b, before, after = trend.model_jump
            parts.append(Text(f"  {MODEL}: step {a} -> {b}: dead {before * 100:.1f}% -> "
                              f"{after * 100:.1f}% ({(after - before) * 100:+.1f} pp)"))
        for t in trend.jumps:
            parts.append(Text(f"  {t.layer}: {t.describe()}"))
        first = trend.first_jump
        if first is not None:
            parts.append(Text.assemble("  => units first died between ",
                                       (f"step {first[0]} and step {first[1]}", "bold red")))

    moves = [t for t in trend.transitions if t.died or t.revived]
    parts.append(Text(""))
    if moves:
        parts.append(Text("Units that died (and revived) between consecutive checkpoints:",
                          style="bold"))
        for t in moves:
            text = f"  {t.from_step} -> {t.to_step}  {t.layer}:"
            if t.died:
                text += f" {len(t.died)} died ({units_list(t.died, limit=8)})"
            if t.revived:
                text += f"{',' if t.died else ''} {len(t.revived)} revived ({units_list(t.revived, limit=8)})"
            parts.append(Text(text))
    else:
        parts.append(Text("No unit changed between dead and alive across the checkpoints."))
    if trend.notes:
        parts.append(Text("\nNotes:", style="bold"))
        parts += [Text(f"  - {note}") for note in trend.notes]
    return parts
