"""GitHub Actions output: workflow-command annotations and the job summary.

Annotations are lines of the form ``::error file=F,title=T::MESSAGE`` on stdout;
the runner turns them into annotations on the run and, when ``file`` is part of
the pull request's diff, on the file. Values are escaped as the Actions toolkit
does (``%``, CR, LF in messages; additionally ``:`` and ``,`` in properties), so
a layer name or message can never end the command early.

GitHub shows at most 10 annotations of each type (error, warning, notice) per
step and drops the rest without a word, so :func:`render_annotations` puts the
most important first (failed gates by how far over their limit, then findings by
severity), keeps at most 10 of each type, and ends with one notice saying how many
were left out and where the full report is. Levels come from
:func:`deadrelu.ci.finding_level`, as in the SARIF output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun

#: Annotations of one type that GitHub shows per step; later ones are dropped.
MAX_PER_TYPE = 10
_COMMAND = {"error": "error", "warning": "warning", "note": "notice"}
_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (``file=``, ``title=``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, *, title: str | None = None,
               file: str | None = None, line: int | None = None) -> str:
    """One ``::level file=...,line=...,title=...::message`` line."""
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
        if line is not None:
            props.append(f"line={int(line)}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{escape_data(message)}"


def render_annotations(run: CheckRun, environ: Mapping[str, str] | None = None) -> str:
    """The annotations of ``run``, most important first, at most 10 per type, then the verdict.

    An ``::error`` per failed gate (in gate order, the largest excess first within a
    gate; a ``fail-on`` gate's lists the findings it matched); a ``::warning`` or
    ``::notice`` per other finding
    (errors before warnings before infos); a ``::notice`` per note. When a type has
    more than GitHub shows, the rest are counted in one closing notice.
    A finding points at the line of the user's code that creates its activation
    module or calls its activation function, when that file is inside the working
    directory (:mod:`deadrelu.ci.locations`); otherwise, and for gates, at the model file.
    """
    from deadrelu.ci.levels import finding_level
    from deadrelu.ci.locations import source_location

    file = run.model_path
    gated = run.gated
    by_level: dict[str, list[str]] = {"error": [], "warning": [], "note": []}
    # Gates keep their order (model-wide first); within one gate the largest excess first.
    rank = {gate: i for i, gate in reversed(list(enumerate(r.gate for r in run.outcome.failures)))}
    failures = sorted(run.outcome.failures, key=lambda r: (rank[r.gate], -_excess(r)))
    for r in failures:
        message = "\n".join([r.message, *r.details[:10]])
        by_level["error"].append(annotation("error", message, title=f"deadrelu {r.name}",
                                            file=file))
    findings = sorted(run.report.findings, key=lambda f: _SEVERITY_RANK.get(f.severity.value, 3))
    for f in findings:
        if f in gated:
            continue  # its failed fail-on gate's error lists it
        level = finding_level(f, gated)
        where = f" ({f.layer})" if f.layer else ""
        at = source_location(run.report, f.layer)  # the line that creates the activation
        by_level[level].append(annotation(
            _COMMAND[level], f"{f.message}\nFix: {f.fix}", title=f"deadrelu {f.code}{where}",
            file=at[0] if at else file, line=at[1] if at else None))
    by_level["note"][:0] = [annotation("notice", note, title="deadrelu")
                            for note in run.outcome.notes]
    # The closing notice takes one of the notices' places.
    overflow = any(len(items) > MAX_PER_TYPE for items in by_level.values())
    lines: list[str] = []
    left_out: dict[str, int] = {}
    for level, items in by_level.items():
        keep = MAX_PER_TYPE - 1 if overflow and level == "note" else MAX_PER_TYPE
        lines += items[:keep]
        if len(items) > keep:
            left_out[_COMMAND[level]] = len(items) - keep
    if left_out:
        counts = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in left_out.items())
        lines.append(annotation(
            "notice", f"{sum(left_out.values())} more annotations not shown ({counts}): GitHub "
            f"shows at most {MAX_PER_TYPE} of each type per step. {_full_report(environ)}",
            title="deadrelu: more findings"))
    lines.append(run.headline())
    return "\n".join(lines) + "\n"


def _excess(result: Any) -> float:
    try:
        return float(result.excess)
    except (TypeError, ValueError):
        return 0.0


def _full_report(environ: Mapping[str, str] | None) -> str:
    env = environ if environ is not None else os.environ
    if env.get("GITHUB_STEP_SUMMARY"):
        return "The full report is in this job's summary."
    return ("For the full report run the same command with --format markdown or --format "
            "sarif -o deadrelu.sarif.")


def write_step_summary(run: CheckRun, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY`` if it is set.

    Returns:
        The file written, or ``None`` when the variable is unset or empty.
    """
    from deadrelu.ci.text import render_markdown

    target = (environ if environ is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(render_markdown(run))
        fh.write("\n")
    return path
