"""``deadrelu merge``: combine JSON reports of scans over disjoint shards into one report.

A thin shell over :func:`deadrelu.report.merge_reports`: the counters of the shard
reports add up (maxima max), so the result is exactly the report of one scan over
all the shards' data. Output as for ``scan`` (:func:`deadrelu.cli.scan.emit`);
exits 0, or 2 with one line on an error (a file that is not a report, reports of
different models or weights, an unsupported schema version).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deadrelu.cli.options import DebugOpt, OutputFormat, OutputOpt, QuietOpt

if TYPE_CHECKING:
    from deadrelu.report import Report

ReportsArg = Annotated[list[Path], typer.Argument(
    metavar="REPORT.json...", show_default=False,
    help="JSON reports (`deadrelu scan --format json`) of one model over disjoint data shards.",
)]
MergeFormatOpt = Annotated[OutputFormat | None, typer.Option(
    "--format", "-f", metavar="FORMAT", case_sensitive=False, show_default=False, rich_help_panel="Output",
    help="json: the merged report (Report.to_dict schema, the default with --output); "
         "table: the terminal report (the default otherwise); csv; markdown.",
)]

HELP = """
Merge the JSON reports of scans over disjoint data shards into one report.

For a data set split across separate jobs or machines: scan each shard
with --format json, then merge. Counters add up exactly, so the merged
report is the report of one scan over all the data (findings are
diagnosed again). Reports of different models or checkpoints, of
different modes (scan vs Monitor), or from an incompatible deadrelu
version are refused.

[bold]Examples[/bold]

  deadrelu scan model.pt --arch m.py:Net --data s0/ -f json -o s0.json
  deadrelu scan model.pt --arch m.py:Net --data s1/ -f json -o s1.json
  deadrelu merge s0.json s1.json         [dim]# the table[/dim]
  deadrelu merge s*.json -o all.json     [dim]# the merged JSON report[/dim]
"""


def register(app: typer.Typer) -> None:
    """Add the ``merge`` command to ``app``."""
    from deadrelu.cli.help import Command

    app.command("merge", cls=Command, help=HELP, no_args_is_help=True)(merge_command)


def merge_command(
    reports: ReportsArg,
    *,
    output_format: MergeFormatOpt = None,
    output: OutputOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # ``debug`` is read by deadrelu.cli.main before parsing; declared here for --help.
    from deadrelu.cli.console import warnings_to_stderr
    from deadrelu.cli.scan import emit

    with warnings_to_stderr(quiet):
        merged = merge_files(reports, output=output)
    fmt = output_format or (OutputFormat.json if output is not None else OutputFormat.table)
    emit(merged, fmt, output=output, quiet=quiet)


def merge_files(paths: list[Path], *, output: Path | None = None) -> Report:
    """Load and merge the reports at ``paths``; raises ``DeadReluError`` with the file named."""
    import warnings

    from deadrelu.errors import ConfigError, ReportError
    from deadrelu.report import Report, merge_reports  # noqa: F811 - the runtime import

    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise ConfigError(f"{paths[i]} is given twice",
                              "pass each shard's report once; a shard merged twice counts twice")
    from deadrelu.cli.outputs import guard_paths

    guard_paths(paths, {"--output": output})
    loaded = []
    for path in paths:
        try:
            loaded.append(Report.load(path))
        except ReportError as exc:
            if str(path) in exc.problem:
                raise
            raise ReportError(f"{path}: {exc.problem}", exc.fix) from exc
    modes = {str(r.meta.get("mode", "eval")) for r in loaded}
    if len(modes) > 1:
        raise ReportError(
            f"cannot merge reports taken in different modes ({', '.join(sorted(modes))})",
            "train-mode (Monitor) and eval-mode (scan) statistics measure different things; "
            "merge only reports of one kind",
        )
    if any(r.thresholds != loaded[0].thresholds for r in loaded[1:]):
        warnings.warn(f"the reports were judged with different thresholds; the merged report "
                      f"uses those of {paths[0]}", stacklevel=2)
    return merge_reports(loaded)
