"""One place where exceptions become one-line messages and exit codes.

Exit codes: 0 success, 1 a gate failed (``check``), 2 an error the user can fix.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer


def error_line(problem: str) -> None:
    """Print ``error: ...`` on stderr (plain text, so it reads the same in CI logs)."""
    sys.stderr.write(f"error: {problem}\n")


def usage_line(exc: Exception) -> None:
    """A click usage error (an unknown option, a value of the wrong type, a missing
    argument) as one line naming the command's help, like every other user error; click
    itself prints three (usage, a hint, the error)."""
    format_message = getattr(exc, "format_message", None)
    message = " ".join(str(format_message() if callable(format_message) else exc).split())
    message = message.rstrip(".")
    if not message:  # no_args_is_help: click has printed the help, which is all there is
        exc.show()  # type: ignore[attr-defined]
        return
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "deadrelu"
    error_line(f"{message[:1].lower()}{message[1:]} — see '{where} --help'")


#: Exit code of a run cut short by Ctrl-C (click turns KeyboardInterrupt into it).
INTERRUPTED = 130
#: Set by a command that printed a partial report for an interrupted scan, so the
#: exit needs no further word.
interrupt_reported = False


def run_guarded(app: typer.Typer, argv: list[str] | None, *, debug: bool) -> None:
    """Run the typer app, turning user errors into one line and exit code 2."""
    from deadrelu.errors import DeadReluError

    global interrupt_reported
    interrupt_reported = False  # per run: main() may be called again in one process
    try:
        # Without standalone mode, click *returns* the code of typer.Exit (and the 130 it
        # makes of a KeyboardInterrupt) instead of exiting with it.
        code = app(args=argv, standalone_mode=False)
    except DeadReluError as exc:
        if debug:  # the traceback, but the same exit code: 1 means "a gate failed"
            traceback.print_exc()
        error_line(str(exc))
        raise SystemExit(2) from None
    except (typer.Exit, SystemExit) as exc:
        exit_code: Any = getattr(exc, "exit_code", getattr(exc, "code", 0))
        raise SystemExit(exit_code) from None
    except typer.Abort:
        error_line("aborted")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:  # click usage errors and the like
        # typer >= 0.29 vendors click as typer._click, so match click's exception by shape.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            usage_line(exc)
            raise SystemExit(2) from None
        if debug:
            traceback.print_exc()
        error_line(f"unexpected {type(exc).__name__}: {exc} — this is a bug in deadrelu; "
                   "re-run with --debug and report the traceback")
        raise SystemExit(3) from None
    if isinstance(code, int) and code:
        if code == INTERRUPTED and not interrupt_reported:
            error_line("interrupted")  # Ctrl-C before any report was printed
        raise SystemExit(code)
