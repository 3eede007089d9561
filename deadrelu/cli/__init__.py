"""The ``deadrelu`` command line: a thin shell over the library.

Each command lives in its own module of this package and exposes
``register(app: typer.Typer) -> None``. Command modules import only typer at
module level (torch, pandas and rich tables are imported inside the command
functions) so that ``deadrelu --help`` answers without importing torch.

Errors: any :class:`deadrelu.errors.DeadReluError` (and a few well-known user
errors) is printed as one line ``error: <problem> — <fix>`` on stderr with exit
code 2 and no traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

#: Command modules, in the order they are listed in --help.
COMMANDS = ("scan", "check", "track", "merge", "prune", "rules")

from deadrelu.cli.help import Group  # noqa: E402  (after typer, before the app)

app = typer.Typer(
    name="deadrelu",
    cls=Group,
    help=(
        "Find dead, dormant and saturated units in trained PyTorch networks, "
        "and say why and what to change.\n\n"
        "Examples:\n\n"
        "  deadrelu scan model.pt --arch models.py:Net --data data/  \n\n"
        "  deadrelu check model.pt --arch models.py:Net --data data/ --max-dead 5%  \n\n"
        "  deadrelu rules DR001"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from deadrelu import __version__

        typer.echo(f"deadrelu {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="",
                                 help="Print the version and exit."),
) -> None:
    """deadrelu: dead-neuron diagnostics for PyTorch."""


def _register_commands() -> None:
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"deadrelu.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"deadrelu.cli.{name}":
                continue  # command not built in this checkout
            raise
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``deadrelu`` script and ``python -m deadrelu``."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    from deadrelu.cli.errors import run_guarded

    run_guarded(app, argv, debug=debug)
