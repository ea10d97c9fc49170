"""The `tuner` command line.

Each command imports the parts it uses when it runs: ``tuner --help`` and a usage error load
only typer and rich.

Every TunerError becomes a one-line message on stderr and the exit code of its kind
(``tuner.errors.ExitCode``): 2 for the user's input (as for a usage error), 3 for the environment.
Ctrl-C exits with 130 and SIGTERM with 143, both after the study has been left intact (trials in
flight stored to run again, servers stopped).
"""

from __future__ import annotations

import signal
import sys

import typer

# The command modules register their commands on the app as they are imported, in the order
# `tuner --help` lists them: running studies first, then what they give.
from tuner.cli import _study_commands  # noqa: F401

# isort: split
from tuner import interrupts
from tuner.cli import _result_commands  # noqa: F401
from tuner.cli._app import Interrupted, app, err_console, interrupted_code, stop_on_sigint, stop_on_sigterm
from tuner.errors import ExitCode, TunerError


def main() -> None:
    """Entry point of the `tuner` console script."""
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: Ctrl-C (or kill -INT) must still stop a study cleanly.
    signal.signal(signal.SIGINT, stop_on_sigint)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        _run()
    finally:
        interrupts.clear()  # the command is over: a stop asked of it does not reach a next one in this process


def _run() -> None:
    """Runs the command line's command, and exits with its code (``ExitCode``)."""
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit instead of raising it
    except Interrupted as exc:
        err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        sys.exit(interrupted_code())
    except TunerError as exc:
        # soft_wrap: one line however long, for logs and scripts
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(interrupted_code())
    except typer.Abort:
        sys.exit(interrupted_code())
    except typer.TyperException as exc:  # usage errors (typer raises its own copy of click's)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(ExitCode.INPUT)
    if code == ExitCode.INTERRUPTED:  # typer's code for a KeyboardInterrupt (or SIGTERM) the command left alone
        err_console.print("interrupted")
        sys.exit(interrupted_code())
    sys.exit(code if isinstance(code, int) else 0)
