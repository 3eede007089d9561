"""``deadrelu check``: scan a checkpoint and fail the build when a gate fails.

A thin shell: loading and scanning are shared with ``scan``
(:mod:`deadrelu.cli.running`), the verdict is :func:`deadrelu.gates.evaluate`,
the output is :mod:`deadrelu.ci`. Gates come from ``[tool.deadrelu.check]``
and the flags (flags win; ``--max-dead-layer`` flags are added after the
file's, so they win for the layers they match).

Exit codes: 0 every gate passed (or ``--exit-zero``), 1 a gate failed, 2 an
error (bad option, unreadable model, data or baseline), 130 interrupted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# deadrelu.ci imports only the standard library at module level; typer needs the enum
# for the --format choices.
from deadrelu.ci import CheckFormat as _CheckFormat
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
    IgnoreOpt,
    ImageSizeOpt,
    ImportPathOpt,
    LimitOpt,
    MaxLengthOpt,
    ModelArg,
    NoProgressOpt,
    NormalizeOpt,
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
    from deadrelu.ci import CheckFormat, CheckRun
    from deadrelu.config import Config
    from deadrelu.gates import Gates
    from deadrelu.report import Report

GATES_PANEL = "Gates"
OUTPUT_PANEL = "Output"


MaxDeadOpt = Annotated[str | None, typer.Option(
    "--max-dead", metavar="SHARE", show_default=False, rich_help_panel=GATES_PANEL,
    help="Fail when more than this share of all units is dead: 5% or 0.05.",
)]
MaxDeadLayerOpt = Annotated[list[str] | None, typer.Option(
    "--max-dead-layer", metavar="GLOB=SHARE", show_default=False, rich_help_panel=GATES_PANEL,
    help="Fail when a layer matching GLOB has more than SHARE dead units, e.g. "
         "'encoder.*=20%' (repeatable; for a layer matched twice the last one wins).",
)]
FailOnOpt = Annotated[list[str] | None, typer.Option(
    "--fail-on", metavar="CODES", show_default=False, rich_help_panel=GATES_PANEL,
    help="Fail on findings with these codes (DR001), code prefixes (DR0) or severities "
         "(error, warning: that severity or worse); comma-separated or repeated. "
         "Default when no gate is set anywhere: error.",
)]
BaselineOpt = Annotated[Path | None, typer.Option(
    "--baseline", metavar="REPORT.json", show_default=False, rich_help_panel=GATES_PANEL,
    help="A report of the last good checkpoint (`deadrelu scan --format json`); fail when the "
         "dead fraction rose by more than --max-increase, whole model or any layer.",
)]
MaxIncreaseOpt = Annotated[str | None, typer.Option(
    "--max-increase", metavar="PP", show_default=False, rich_help_panel=GATES_PANEL,
    help="Allowed rise over --baseline in percentage points: 2, 2pp or 2% "
         "\\[default with --baseline: 0].",
)]
ExitZeroOpt = Annotated[bool, typer.Option(
    "--exit-zero", rich_help_panel=GATES_PANEL,
    help="Exit 0 even when a gate fails (errors still exit 2).",
)]
CheckFormatOpt = Annotated[_CheckFormat, typer.Option(
    "--format", "-f", metavar="FORMAT", case_sensitive=False, rich_help_panel=OUTPUT_PANEL,
    help="table: gates table for a terminal; github: workflow annotations (plus a job summary "
         "in $GITHUB_STEP_SUMMARY); junit: JUnit XML; sarif: SARIF 2.1.0; json; markdown: for a "
         "PR comment; html: one offline page with charts. Anything but table puts only that format on stdout.",
)]

HELP = """
Scan MODEL and fail (exit 1) when too many units are dead.

Takes the same model and data options as `deadrelu scan`, plus gates. Every
gate is evaluated and every failure listed with its size and place. Gates can
also be set in \\[tool.deadrelu.check] of pyproject.toml; flags win.

Exit codes: 0 all gates pass, 1 a gate failed, 2 an error (bad option, model,
data or baseline). --exit-zero turns 1 into 0.

[bold]Examples[/bold]

[dim]# at most 5% dead overall, 20% in any encoder layer[/dim]
  deadrelu check model.pt --arch mypkg.nets:Net --data val/ \\
      --max-dead 5% --max-dead-layer 'encoder.*=20%'

[dim]# no more than 2 points worse than the last good checkpoint[/dim]
  deadrelu scan good.pt --arch mypkg.nets:Net --data val/ \\
      --format json -o baseline.json
  deadrelu check new.pt --arch mypkg.nets:Net --data val/ \\
      --baseline baseline.json --max-increase 2pp

[dim]# in GitHub Actions: annotations and a job summary[/dim]
  deadrelu check model.pt --data val/ --max-dead 5% --format github

[dim]# the sample models in this repository (fails: a learning-rate spike[/dim]
[dim]# killed units)[/dim]
  deadrelu check sample_models/series/step_400.pt \\
      --arch sample_models/models.py:DigitsMLP \\
      --data sample_models/data/digits_test.npy --max-dead 20%
"""


def register(app: typer.Typer) -> None:
    """Add the ``check`` command to ``app``."""
    from deadrelu.cli.help import Command

    app.command("check", cls=Command, help=HELP, no_args_is_help=True,
                rich_help_panel=None)(check_command)


def check_command(
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
    max_dead: MaxDeadOpt = None,
    max_dead_layer: MaxDeadLayerOpt = None,
    fail_on: FailOnOpt = None,
    baseline: BaselineOpt = None,
    max_increase: MaxIncreaseOpt = None,
    exit_zero: ExitZeroOpt = False,
    config: ConfigOpt = None,
    rare: RareOpt = None,
    always_on: AlwaysOnOpt = None,
    saturated: SaturatedOpt = None,
    dormancy: DormancyOpt = None,
    tau: TauOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    output_format: CheckFormatOpt = _CheckFormat.table,
    output: OutputOpt = None,
    no_progress: NoProgressOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    # ``debug`` is read by deadrelu.cli.main before parsing; declared here for --help.
    params = dict(locals())  # the options, read by name (deadrelu.cli.settings)
    from deadrelu.ci import CheckRun
    from deadrelu.cli.console import warnings_to_stderr
    from deadrelu.cli.outputs import guard_paths
    from deadrelu.cli.running import load_and_scan
    from deadrelu.cli.settings import command_settings, load_options
    from deadrelu.errors import DeadReluError
    from deadrelu.gates import evaluate

    try:
        with warnings_to_stderr(quiet):
            settings = command_settings(params)
            cfg = settings.config
            # Everything a user can get wrong is checked before the (slow) scan.
            gates, notes = resolve_gates(cfg, max_dead=max_dead, max_dead_layer=max_dead_layer or [],
                                         fail_on=fail_on or [], max_increase=max_increase,
                                         baseline=baseline)
            baseline_path = baseline or _config_baseline(cfg)
            exit_zero = exit_zero or bool(cfg.check.get("exit_zero", False))
            opts = load_options(params, cfg, device=settings.device)
            guard_paths([*opts.input_paths(), *filter(None, [baseline_path])],
                        {"--output": output, "$GITHUB_STEP_SUMMARY": _step_summary(output_format)},
                        streams=[opts.config_file])
            base_report = _load_baseline(baseline_path) if baseline_path is not None else None
            report = load_and_scan(opts, settings, progress=not no_progress, quiet=quiet,
                                   partial_on_interrupt=False, compare_init=compare_init.wanted())
    except DeadReluError as exc:  # CI formats still say why there is no result; exit 2
        # The error may come before the files were compared: compare what is known now.
        from deadrelu.loading.options import LoadOptions

        known = LoadOptions(model=model, data=data, arch=arch,
                            import_paths=tuple(import_path or ()), config_file=config)
        _emit_error(exc, output_format, model=model, output=output,
                    inputs=[*known.input_paths(), *filter(None, [baseline])])
        raise
    outcome = evaluate(report, gates, base_report)
    if notes:
        from dataclasses import replace

        outcome = replace(outcome, notes=(*notes, *outcome.notes))
    run = CheckRun(outcome, report, display_path(model),
                   display_path(baseline_path) if baseline_path is not None else None)
    emit(run, output_format, output=output, quiet=quiet)
    code = outcome.exit_code(exit_zero=exit_zero)
    if code:
        raise typer.Exit(code)


def _emit_error(exc: Exception, output_format: CheckFormat, *, model: Path,
                output: Path | None, inputs: list[Path]) -> None:
    """Say that the check could not run where CI looks for results.

    Every format has its own way to say it (:func:`deadrelu.ci.render_error`): with
    ``-o`` it is written to that file, so a CI step that uploads it always finds one;
    without, the machine formats print it on stdout (the one-line ``error:`` on stderr
    follows either way). The file is not written when the error is about ``--output``
    itself or where :func:`~deadrelu.cli.outputs.guard_paths` refuses it (an input,
    under any name).
    """
    import sys

    from deadrelu.ci import CheckFormat, render_error
    from deadrelu.cli.outputs import guard_paths
    from deadrelu.errors import DeadReluError

    message = str(exc)
    text = render_error(output_format, display_path(model), message)
    if output is None:
        if output_format is not CheckFormat.table:
            sys.stdout.write(text)
        return
    if "--output" in message:
        return
    try:
        guard_paths(inputs, {"--output": output}, streams=inputs)
    except DeadReluError:
        return  # never write over an input (or where that cannot be told)
    with contextlib.suppress(OSError):
        output.write_text(text, encoding="utf-8")


def _step_summary(output_format: CheckFormat) -> Path | None:
    """The job summary file ``--format github`` appends to, if any."""
    import os

    from deadrelu.ci import CheckFormat

    target = os.environ.get("GITHUB_STEP_SUMMARY")
    return Path(target) if target and output_format is CheckFormat.github else None


def resolve_gates(
    config: Config,
    *,
    max_dead: str | None,
    max_dead_layer: list[str],
    fail_on: list[str],
    max_increase: str | None,
    baseline: Path | None,
) -> tuple[Gates, list[str]]:
    """The gates from ``[tool.deadrelu.check]`` overridden by flags, and notes on defaults used.

    Raises:
        ConfigError: a malformed value, or ``--max-increase`` without a baseline.
    """
    from deadrelu.errors import ConfigError
    from deadrelu.gates import (
        DEFAULT_GATES,
        Gates,
        parse_fail_on,
        parse_fraction,
        parse_layer_limit,
        parse_points,
    )

    gates = Gates.from_config(config.check, exclude_layers=config.exclude_layers).override(
        max_dead=parse_fraction(max_dead) if max_dead is not None else None,
        max_dead_layer=[parse_layer_limit(v) for v in max_dead_layer],
        fail_on=parse_fail_on(fail_on),
        max_increase=parse_points(max_increase) if max_increase is not None else None,
    )
    notes = []
    has_baseline = baseline is not None or _config_baseline(config) is not None
    if gates.max_increase is not None and not has_baseline:
        raise ConfigError("--max-increase compares with a baseline, but none was given",
                          "pass --baseline report.json (from `deadrelu scan --format json`)")
    if has_baseline and gates.max_increase is None:
        from dataclasses import replace

        gates = replace(gates, max_increase=0.0)
        notes.append("baseline given without --max-increase: any rise in dead fraction fails")
    if gates.empty:
        gates = Gates(fail_on=DEFAULT_GATES.fail_on, exclude_layers=gates.exclude_layers)
        notes.append("no gate configured: using the default --fail-on error "
                     "(set --max-dead, --max-dead-layer, --fail-on or --baseline)")
    return gates, notes


def _config_baseline(config: Config) -> Path | None:
    value = config.check.get("baseline")
    return Path(value) if value else None


def _load_baseline(path: Path) -> Report:
    from deadrelu.errors import ReportError
    from deadrelu.report import Report

    try:
        return Report.load(path)
    except ReportError as exc:
        # Say which option the file came from; Report.load's message names the file.
        raise ReportError(f"baseline: {exc.problem}", exc.fix) from exc


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (GitHub and SARIF
    resolve annotation paths against the repository root), else as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def emit(run: CheckRun, output_format: CheckFormat, *, output: Path | None, quiet: bool) -> None:
    """Print (and with ``--output`` write) the outcome in ``output_format``."""
    import sys

    from deadrelu.ci import CheckFormat, render

    if output_format is CheckFormat.github:
        from deadrelu.ci.github import write_step_summary

        write_step_summary(run)
    if output is not None:
        from deadrelu.cli.outputs import write_output

        write_output(output, render(output_format, run, width=120))
        if not quiet:
            _print_table(run)
            sys.stderr.write(f"wrote {output_format.value} to {output}\n")
        return
    if output_format is CheckFormat.table:
        if quiet:
            sys.stdout.write(run.headline() + "\n")
        else:
            _print_table(run)
        return
    sys.stdout.write(render(output_format, run))


def _print_table(run: CheckRun) -> None:
    from rich.console import Console

    from deadrelu.ci.text import print_table

    print_table(run, Console(highlight=False))
