"""The `tuner` command line's typer apps, shared options and exit codes.

The commands themselves are in ``_study_commands`` (running and recording studies) and
``_result_commands`` (what a study gives: reports, exports, comparisons, verification, the
servers that show it); ``_commands.main`` is the entry point.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tuner import interrupts
from tuner.errors import ExitCode, StudyNotFoundError

if TYPE_CHECKING:
    from tuner.storage import Store

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's paragraphs are wrapped whole
    help="Autotuner for Triton Inference Server configs.",
)
models_app = typer.Typer(no_args_is_help=True, help="The bundled real models.")
app.add_typer(models_app, name="models")
landscape_app = typer.Typer(no_args_is_help=True, help="Recorded landscapes: every config measured once, for replays.")
app.add_typer(landscape_app, name="landscape")

err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DEFAULT_STORAGE = "sqlite:///tuner.db"
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage", help="SQLAlchemy URL of the study storage (default: $TUNER_STORAGE or sqlite:///tuner.db)"
    ),
]
#: ``--storage`` of a command that reads a study file, whose own ``storage`` it overrides.
FileStorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="SQLAlchemy URL of the study storage; overrides the study file's `storage` (default: $TUNER_STORAGE, "
        "else the file's)",
    ),
]


def env_storage() -> str | None:
    """``$TUNER_STORAGE``, taken out of this process's environment as it is read (once per command).

    The URL may hold a password, and none of the processes a command starts needs it: Ray's, the
    Triton servers and their python-backend stubs, which run a repository model's own code.
    """
    return os.environ.pop("TUNER_STORAGE", None)


def storage_url(option: str | None) -> str:
    from tuner.config import resolve_storage

    return resolve_storage(option or env_storage() or DEFAULT_STORAGE, Path.cwd())


def open_store(option: str | None) -> Store:
    """The storage ``--storage`` (``option``) names, which must exist: a result command creates none.

    Raises:
        StudyNotFoundError: no SQLite file at that path; the message says how to name another.
    """
    from tuner.storage import Store

    try:
        return Store(storage_url(option), must_exist=True)
    except StudyNotFoundError as exc:
        raise StudyNotFoundError(
            f"{exc}: name the study's storage with --storage or $TUNER_STORAGE (a relative SQLite path starts in the "
            "folder the command runs in)"
        ) from None


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the tuner does.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if set(sys.argv[1:]) & set(ctx.help_option_names):  # a command's help: nothing runs, no library to quiet
        return
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)


#: The signal that stopped this run (SIGINT unless SIGTERM came), for its exit code.
_stopped_by: list[int] = [signal.SIGINT]


class Interrupted(Exception):
    """A command that Ctrl-C or SIGTERM stopped and that left its work stored: the message says how to go on.

    Typer turns a KeyboardInterrupt that leaves a command into exit code 130 whatever the signal, and
    says nothing; a command that handles the interrupt itself raises this instead."""


def interrupted_code() -> ExitCode:
    """The exit code of a run that was stopped: 143 after SIGTERM, 130 after Ctrl-C."""
    return ExitCode.TERMINATED if _stopped_by[0] == signal.SIGTERM else ExitCode.INTERRUPTED


def stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (timeout, systemd, Kubernetes, docker stop) stops a run as Ctrl-C does.

    A second SIGTERM is ignored: the clean-up the first one started (storing the trials in
    flight, stopping the servers) must finish; SIGKILL remains for a run that hangs.
    """
    _stopped_by[0] = signum
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    interrupts.request()  # kept too: where this KeyboardInterrupt is lost, the study loop raises it again
    raise KeyboardInterrupt


def stop_on_sigint(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: Python's own KeyboardInterrupt, the stop also kept (``tuner.interrupts``)."""
    interrupts.request()
    signal.default_int_handler(signum, frame)
