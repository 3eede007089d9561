"""``deadrelu rules [CODE]``: list the diagnosis rules, or show one rule's documentation.

The documentation is the rule's own (declared next to its check in
:mod:`deadrelu.diagnose.rules`); ``docs/rules.md`` is generated from the same
source. Only typer is imported at module level, and the command itself never
imports torch.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer


class RulesFormat(str, Enum):
    """How ``deadrelu rules`` prints."""

    text = "text"
    json = "json"
    markdown = "markdown"


def rules(
    code: Annotated[str | None, typer.Argument(
        metavar="CODE", help="A rule code such as DR001; omit to list every rule.",
        show_default=False)] = None,
    output_format: Annotated[RulesFormat, typer.Option(
        "--format", "-f", metavar="FORMAT", case_sensitive=False,
        help="text, json (for tools) or markdown (what docs/rules.md holds).")
    ] = RulesFormat.text,
) -> None:
    """List the diagnosis rules, or explain one: what it checks, why it matters, the fix, an example."""
    from deadrelu.diagnose.registry import RULES
    from deadrelu.errors import ConfigError

    if code is not None:
        try:
            selected = [RULES.get(code)]
        except KeyError:
            raise ConfigError(f"no rule {code!r}",
                              f"known rules: {', '.join(RULES.codes())} (`deadrelu rules` lists them)"
                              ) from None
    else:
        selected = list(RULES)

    if output_format is RulesFormat.json:
        items = [{"code": r.code, "name": r.name, "causes": list(r.causes), "severity": r.severity,
                  "summary": r.summary, "checks": r.checks, "why": r.why, "fix": r.fix,
                  "example": r.example}
                 for r in selected]
        typer.echo(json.dumps(items[0] if code is not None else items, indent=2, ensure_ascii=False))
    elif output_format is RulesFormat.markdown:
        if code is None:  # the whole of docs/rules.md, introduction and table included
            from deadrelu.diagnose import docs

            typer.echo(docs.render().rstrip())
        else:
            typer.echo(selected[0].to_markdown().rstrip())
    elif code is not None:
        typer.echo(selected[0].to_text().rstrip())
    else:
        name_w = max(len(r.name) for r in selected)
        cause_w = max(len(", ".join(r.causes)) for r in selected)
        for r in selected:
            causes = ", ".join(r.causes)
            typer.echo(f"{r.code}  {r.name:<{name_w}}  {causes:<{cause_w}}  {r.summary}")
        typer.echo("\n`deadrelu rules CODE` shows one rule in full.")


def register(app: typer.Typer) -> None:
    """Add ``rules`` to the ``deadrelu`` app."""
    from deadrelu.cli.help import Command

    app.command("rules", cls=Command,
                help="List the diagnosis rules, or explain one (`deadrelu rules DR001`).")(rules)
