"""GitHub Actions output: workflow-command annotations and the job summary.

Annotations are lines of the form ``::error file=F,title=T::MESSAGE`` on stdout;
the runner turns them into annotations on the run and, when ``file`` is part of
the pull request's diff, on the file. Values are escaped as the Actions toolkit
does (``%``, CR, LF in messages; additionally ``:`` and ``,`` in properties), so
a layer name or message can never end the command early.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deadrelu.ci import CheckRun

_LEVEL = {"error": "warning", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (``file=``, ``title=``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, *, title: str | None = None,
               file: str | None = None) -> str:
    """One ``::level file=...,title=...::message`` line."""
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
    if title:
        props.append(f"title={escape_property(title)}")
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{escape_data(message)}"


def render_annotations(run: CheckRun) -> str:
    """An ``::error`` per failed gate, a ``::warning``/``::notice`` per finding not already
    reported by a failed ``fail-on`` gate, a ``::notice`` per note, then the verdict line."""
    file = run.model_path
    lines = []
    for r in run.outcome.failures:
        message = "\n".join([r.message, *r.details[:10]])
        lines.append(annotation("error", message, title=f"deadrelu {r.name}", file=file))
    gated = [f for r in run.outcome.failures for f in r.findings]
    for f in run.report.findings:
        if f in gated:
            continue
        where = f" ({f.layer})" if f.layer else ""
        lines.append(annotation(_LEVEL[f.severity.value], f"{f.message}\nFix: {f.fix}",
                                title=f"deadrelu {f.code}{where}", file=file))
    lines += [annotation("notice", note, title="deadrelu") for note in run.outcome.notes]
    lines.append(run.headline())
    return "\n".join(lines) + "\n"


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
