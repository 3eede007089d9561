"""Human-readable ``check`` output: a rich gates table for terminals, Markdown for PRs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun
    from deadrelu.gates import GateResult

#: Details shown per failed gate before "... and N more".
_MAX_DETAILS = 5


def _scope(result: GateResult) -> str:
    return result.layer if result.layer is not None else "model"


def _details(result: GateResult) -> list[str]:
    lines = list(result.details[:_MAX_DETAILS])
    if len(result.details) > _MAX_DETAILS:
        lines.append(f"... and {len(result.details) - _MAX_DETAILS} more")
    return lines


def table_parts(run: CheckRun) -> list[Any]:
    """Renderables of the terminal output, in order: header, gates table, failures with
    their details, notes, verdict. Plain lines are :class:`rich.text.Text`; print them with
    ``soft_wrap=True`` so a long message stays one line (CI logs are read with grep)."""
    from rich.table import Table
    from rich.text import Text

    outcome = run.outcome
    parts: list[Any] = [
        Text.assemble(("deadrelu check", "bold"), "  ", run.model_label),
        Text(run.summary_line(), style="dim"),
    ]
    if run.baseline_path:
        parts.append(Text(f"baseline: {run.baseline_path}", style="dim"))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("Gate")
    table.add_column("Scope")
    table.add_column("Actual", justify="right")
    table.add_column("Limit", justify="right")
    table.add_column("Result")
    table.add_column("Over by", justify="right")
    for r in outcome.results:
        verdict = Text("PASS", style="green") if r.passed else Text("FAIL", style="bold red")
        table.add_row(r.gate + (f" {r.rule}" if r.gate == "fail-on" else ""), _scope(r),
                      r.format_actual(), r.format_limit(), verdict, r.format_excess())
    parts += [Text(""), table]
    if outcome.failures:
        parts.append(Text("\nFailed gates:", style="bold"))
        for r in outcome.failures:
            parts.append(Text.assemble(("  FAIL ", "bold red"), (f"{r.name}: ", "bold"), r.message))
            parts += [Text(f"       {line}") for line in _details(r)]
    gated = [f for r in outcome.failures for f in r.findings]
    others = [f for f in run.report.findings if f not in gated]
    if others:
        counts = {sev: sum(f.severity.value == sev for f in others)
                  for sev in ("error", "warning", "info")}
        shown = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
        parts.append(Text(f"\nOther findings (not failing a gate): {shown}; "
                          "`deadrelu scan` shows them in full.", style="dim"))
    if outcome.notes:
        parts.append(Text("\nNotes:", style="bold"))
        parts += [Text(f"  - {note}") for note in outcome.notes]
    parts.append(Text(""))
    parts.append(Text(run.headline(), style="bold red" if outcome.failures else "bold green"))
    return parts


def print_table(run: CheckRun, console: Any) -> None:
    """Print :func:`table_parts` on ``console``."""
    from rich.text import Text

    for part in table_parts(run):
        console.print(part, soft_wrap=isinstance(part, Text))


def render_table_text(run: CheckRun, *, width: int | None = None) -> str:
    """The terminal output as plain text (no colour), e.g. for tests and files."""
    import io

    from rich.console import Console

    console = Console(width=width or 100, record=True, color_system=None, force_terminal=False,
                      file=io.StringIO(), highlight=False)
    print_table(run, console)
    # rich pads table rows to the console width; a file should not carry that padding
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def _md(text: str) -> str:
    """Escape what would break a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(run: CheckRun) -> str:
    """Markdown for a PR comment or ``$GITHUB_STEP_SUMMARY``: verdict, gates table, details."""
    outcome = run.outcome
    icon = ":x:" if outcome.failures else ":white_check_mark:"
    lines = [
        f"### {icon} {run.headline()}",
        "",
        f"Model `{run.model_label}`: {run.summary_line()}."
        + (f" Baseline `{run.baseline_path}`." if run.baseline_path else ""),
        "",
        "| Gate | Scope | Actual | Limit | Result |",
        "|---|---|--:|--:|---|",
    ]
    for r in outcome.results:
        result = "PASS" if r.passed else f"**FAIL** ({r.format_excess()})"
        gate = r.gate + (f" `{r.rule}`" if r.gate == "fail-on" else "")
        lines.append(f"| {gate} | {_md(_scope(r))} | {r.format_actual()} | {r.format_limit()} "
                     f"| {result} |")
    if outcome.failures:
        lines += ["", "**Failed gates**", ""]
        for r in outcome.failures:
            lines.append(f"- `{r.name}`: {_md(r.message)}")
            lines += [f"  - {_md(d)}" for d in _details(r)]
    if outcome.notes:
        lines += ["", "**Notes**", ""]
        lines += [f"- {_md(n)}" for n in outcome.notes]
    findings = run.report.findings
    if findings:
        lines += ["", f"<details><summary>{len(findings)} finding(s)</summary>", ""]
        for f in findings:
            lines.append(f"- **{f.code}** ({f.severity}) `{f.layer or 'model'}`: {_md(f.message)}")
            lines.append(f"  - *Likely cause:* {_md(f.cause.replace('_', ' '))}. *Fix:* {_md(f.fix)}")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_markdown_error(model_label: str, message: str) -> str:
    """Markdown for a check that could not run: the verdict line and the error."""
    return (f"### :x: deadrelu check could not run\n\nModel `{model_label}`: "
            f"{_md(message)}\n")
