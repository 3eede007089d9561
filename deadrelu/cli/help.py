"""``--help`` that reads like the rest of the Python CLI world.

typer's rich help prints a type column for every parameter: ``<bool>`` after a
flag (as if ``--quiet`` took a value), ``<path>``/``<list[Path]>`` after an
argument, and a required argument as ``{MODEL}`` in the usage line. argparse,
click, ruff and pip print none of that: a flag stands alone, an argument is its
name (``MODEL``, ``REPORT...``), an optional one is ``[CODE]``.

This module keeps deadrelu's own help that way, whatever typer version renders
it: :class:`Command` (every command's ``cls``) and :class:`Group` (the app's) drop
the type column of flags and arguments and write the usage line themselves. Every
option that takes a value names it with its own ``metavar`` (``FILE``, ``SHARE``,
``FORMAT``...), so choices are listed once, in the help text that explains them.
The golden files ``tests/golden/help_*.txt`` pin the result at 80 columns.
"""

from __future__ import annotations

from typing import Any

import typer.core


def _plain(params: list[Any]) -> None:
    """No type column for flags (``is_flag``) and arguments: the name says it all."""
    for param in params:
        is_argument = getattr(param, "param_type_name", "") == "argument"
        if is_argument or getattr(param, "is_flag", False):
            if getattr(param, "metavar", None) is None and not is_argument:
                param.metavar = ""
            # an instance attribute, so only deadrelu's own parameters change
            param.display_type_rich = _no_type


def _no_type(*_args: Any, **_kwargs: Any) -> str:
    return ""


def _usage(command: Any, ctx: Any) -> list[str]:
    """``[OPTIONS] MODEL``, ``[OPTIONS] REPORT...``, ``[OPTIONS] [CODE]``."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if getattr(param, "param_type_name", "") != "argument":
            continue
        name = param.metavar or (param.name or "").upper()
        if param.nargs != 1 and not name.endswith("..."):
            name += "..."
        pieces.append(name if param.required else f"[{name}]")
    return pieces


class _PlainHelp:
    """Plain flags and arguments (:func:`_plain`), the help option's included; mixed in
    before typer's own command or group class."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # typer's class, next in the MRO, takes them
        super().__init__(*args, **kwargs)
        _plain(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _plain([option])
        return option


class Command(_PlainHelp, typer.core.TyperCommand):
    """A typer command whose help has no ``<bool>``/``<path>`` column and no ``{MODEL}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage(self, ctx)


class Group(_PlainHelp, typer.core.TyperGroup):
    """The ``deadrelu`` app: the same plain flags as :class:`Command`."""
