"""A :class:`~deadrelu.report.Report` as JSON, CSV or Markdown text.

* JSON is exactly :meth:`Report.to_dict` (so ``Report.from_dict(json.loads(text))``
  round-trips); non-finite floats (a ``max`` of ``-inf`` for a unit that only ever
  produced NaN) are written as ``-Infinity``, as Python's :mod:`json` does.
* CSV is the per-layer table, the same columns as :attr:`Report.layers`, built
  without pandas so the CLI does not pay for importing it.
* Markdown is the terminal report's content (header, layer table, findings,
  summary) as GitHub-flavoured Markdown, for CI summaries and pull requests.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from deadrelu.render import header_rows, legend, summary_line, table_rows

if TYPE_CHECKING:
    from deadrelu.report import Report

__all__ = ["to_csv", "to_json", "to_markdown"]


def to_json(report: Report, *, indent: int | None = 2) -> str:
    """``report.to_dict()`` as strict JSON text (no NaN/Infinity; ends with a newline)."""
    return json.dumps(report.to_dict(), indent=indent, allow_nan=False) + "\n"


def to_csv(report: Report) -> str:
    """The per-layer table (one row per activation site, forward order) as CSV."""
    records = report.layer_records()
    buffer = io.StringIO()
    if not records:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return buffer.getvalue()


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    """Header, per-layer table, findings and summary as Markdown."""
    lines = ["# deadrelu report", ""]
    if report.partial:
        lines += [f"> **PARTIAL:** the scan was interrupted; these results cover only the first "
                  f"{report.samples:,} samples.", ""]
    for label, value in header_rows(report):
        lines.append(f"- **{label}:** {_cell(value)}")
    for note in report.meta.get("notes") or ():
        lines.append(f"- **note:** {_cell(note)}")
    lines.append("")
    rows = table_rows(report)
    if rows:
        lines += [
            "| layer | kind | units | dead | rare | on/sat | fire rate 0% → 100% | verdict |",
            "|---|---|--:|--:|--:|--:|:-:|---|",
        ]
        for row in rows:
            lines.append(
                f"| `{_cell(row['layer'])}` | {_cell(row['kind'])} | {row['units']} | {row['dead']} "
                f"| {row['rare']} | {row['on/sat']} | `{row['fire rate']}` | {_cell(row['verdict'])} |"
            )
        lines += ["", f"<sub>{_cell(legend(report))}</sub>", ""]
    lines += [f"## Findings ({len(report.findings)})", ""]
    if not report.findings:
        lines.append("No problems found.")
    for finding in report.findings:
        where = f" in `{finding.layer}`" if finding.layer else ""
        lines.append(f"- **{finding.code}** ({finding.severity.value}){where}: {_cell(finding.message)}")
        if finding.cause and finding.cause != "unknown":  # as the terminal report says it
            lines.append(f"  - *Likely cause:* {_cell(finding.cause.replace('_', ' '))}")
        if finding.fix:
            lines.append(f"  - *Fix:* {_cell(finding.fix)}")
    lines += ["", f"**Summary:** {summary_line(report)}", ""]
    return "\n".join(lines)
