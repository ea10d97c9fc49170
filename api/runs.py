"""Studies started over HTTP: each runs `tuner optimize FILE` in a child process.

A posted study file is validated like any other (``tuner.config.parse_config``), with its
relative paths taken from the API's study root, and may choose only what the API's operator
allows (``api.confine``); its storage is forced to the API's own and its work folder to one under
the API's work folder. The validated file is written to ``WORK/studies/NAME.yaml`` and the run's
output to ``WORK/studies/NAME.log``, both readable by the API's user only; the file names the
storage without its password, which the run gets in ``$TUNER_STORAGE`` (never on its command line).
Deleting a study removes both files and its work folder ``WORK/runs/NAME``.

Stopping a run is SIGTERM, which the tuner handles like Ctrl-C: it interrupts the trials in
flight, stores them for a resume and stops its servers; after ``stop_timeout_s`` the process
group is killed. The API stops all its runs at once when it shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

import yaml

from api.confine import check_choices, check_paths, own_ray_address
from api.errors import ConflictError, run_exit_error
from api.settings import ApiSettings
from tuner.config import StudyConfig, parse_config
from tuner.storage import redact_url

logger = logging.getLogger(__name__)

#: Environment variables a run does not inherit: the API's secrets are none of its business.
_PRIVATE_ENV = ("TUNER_API_TOKEN",)
#: What a run's files and folders may be read by: the API's user only (a umask).
_PRIVATE_UMASK = 0o077
#: The command of a run, before its study file.
RUN_COMMAND = (sys.executable, "-m", "tuner.cli", "optimize")


class _Alive(Protocol):
    @property
    def alive(self) -> bool: ...


_Launched = TypeVar("_Launched", bound=_Alive)


class RunSlots:
    """How many runs this API starts (posted studies and verifications) may measure at once.

    Runs on the same cores take CPU from each other's measurements: two posted digits studies side by
    side had every trial flagged for other processes' CPU, at 0.7x what the same config measured
    alone. So a run that would go over ``limit`` is refused (409) rather than queued: the client
    knows at once, and posts again once a run has ended.

    Args:
        limit: Runs alive at once (``TUNER_API_MAX_RUNS``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, _Alive] = {}
        self._lock = threading.Lock()

    def claim(self, what: str, launch: Callable[[], _Launched]) -> _Launched:
        """Runs ``launch`` (which starts ``what``, e.g. "study 'x'") if fewer than ``limit`` runs are alive.

        Raises:
            ConflictError: ``limit`` runs are alive; the message names them.
        """
        with self._lock:
            self._held = {name: run for name, run in self._held.items() if run.alive}
            if len(self._held) >= self.limit:
                raise ConflictError(
                    f"{', '.join(self._held)} {'is' if len(self._held) == 1 else 'are'} measuring on this machine, "
                    f"and this API runs at most {self.limit} at a time (TUNER_API_MAX_RUNS), as runs on the same "
                    "cores spoil each other's measurements: try again once it has ended"
                )
            launched = launch()
            self._held[what] = launched
            return launched


@dataclass
class Run:
    """A `tuner optimize` process started by the API."""

    name: str
    process: subprocess.Popen[bytes]
    study_file: Path
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def validate_study(data: Any, settings: ApiSettings) -> StudyConfig:
    """A posted study file, validated, with the API's storage and a work folder of the API's.

    Raises:
        ConfigError: a field is invalid, or chooses what the API does not allow (``api.confine``).
    """
    if isinstance(data, Mapping):
        check_paths(data, settings)
        data = {**data, "storage": settings.storage, "work_dir": str(settings.work_dir / "runs")}
    cfg = parse_config(data, settings.study_root, source="study file")
    check_choices(cfg, settings, own_ray_address())
    return cfg


def study_files(settings: ApiSettings, name: str) -> list[Path]:
    """What a run of study ``name`` leaves in the API's work folder: its file, its log, its work folder."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):  # a name from a URL: never a path
        return []
    studies = settings.work_dir / "studies"
    return [studies / f"{name}.yaml", studies / f"{name}.log", settings.work_dir / "runs" / name]


def remove_study_files(settings: ApiSettings, name: str) -> None:
    """Removes what a run of study ``name`` left in the API's work folder."""
    for path in study_files(settings, name):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float, what: str) -> None:
    """SIGTERM to a tuner process started in a session of its own, then SIGKILL of its group after ``timeout_s``.

    ``what`` names it in the log: ``the run of study 'x'``.
    """
    logger.info("stopping %s (pid %d)", what, process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0f s: killing it", what, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is the process's alone
        process.wait(timeout=30)
    logger.info("%s exited with code %s", what, process.returncode)


class RunManager:
    """Starts, tracks and stops the runs of posted studies.

    Args:
        settings: The API's settings (work folder, timeouts).
        study_exists: Tells whether a study of a name is in the storage.
        slots: The runs alive at once, shared with the verifications.
        command: The command a run is, before its study file's path.
    """

    def __init__(
        self,
        settings: ApiSettings,
        study_exists: Callable[[str], bool],
        slots: RunSlots,
        command: Sequence[str] = RUN_COMMAND,
    ) -> None:
        self._settings = settings
        self._study_exists = study_exists
        self._slots = slots
        self._command = tuple(command)
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Run | None:
        with self._lock:
            return self._runs.get(name)

    def start(self, cfg: StudyConfig) -> Run:
        """Starts a run of a new study and waits until the study is in the storage.

        Raises:
            ConflictError: a study of that name exists or is being started, or ``slots`` are all taken.
            ConfigError: the run refused the study (exit code 2, with its message).
            RunEnvironmentError: the run's server, storage or perf_analyzer failed before it stored
                the study (exit code 3, with its output).
            RunFailedError: the run exited otherwise before storing the study.
        """
        with self._lock:
            current = self._runs.get(cfg.study)
            if (current is not None and current.alive) or self._study_exists(cfg.study):
                raise ConflictError(f"study {cfg.study!r} exists already; delete it or choose another name")
            run = self._slots.claim(f"study {cfg.study!r}", lambda: self._launch(cfg))
            self._runs[cfg.study] = run
        self._wait_until_stored(run)
        return run

    def stop(self, name: str) -> bool:
        """Stops the run of a study, if this API started one that is alive; True if it did."""
        run = self.get(name)
        if run is None or not run.alive:
            return False
        stop_process(run.process, self._settings.stop_timeout_s, f"the run of study {name!r}")
        return True

    def forget(self, name: str) -> None:
        with self._lock:
            self._runs.pop(name, None)

    def stop_all(self) -> None:
        """Stops every run still alive (the API is shutting down)."""
        with self._lock:
            names = [name for name, run in self._runs.items() if run.alive]
        if not names:
            return
        # At once: each may take up to stop_timeout_s, and whoever stops the API waits for them all.
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stop-run") as pool:
            list(pool.map(self.stop, names))

    def _launch(self, cfg: StudyConfig) -> Run:
        folder = self._settings.work_dir / "studies"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        study_file = folder / f"{cfg.study}.yaml"  # the name is [A-Za-z0-9][A-Za-z0-9_.-]*: no path in it
        written = cfg.model_dump(mode="json") | {"storage": redact_url(cfg.storage)}
        with open_private(study_file) as out:
            out.write(yaml.safe_dump(written, sort_keys=False).encode())
        log = folder / f"{cfg.study}.log"
        with open_private(log) as out:
            process = subprocess.Popen(
                [*self._command, str(study_file)],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._run_env(cfg),
                start_new_session=True,  # Ctrl-C at the API's terminal is the API's; it stops runs itself
                umask=_PRIVATE_UMASK,  # the run's work folder and logs are the API user's alone
            )
        logger.info("started study %r: pid %d, log %s", cfg.study, process.pid, log)
        return Run(cfg.study, process, study_file, log)

    def _run_env(self, cfg: StudyConfig) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["TUNER_STORAGE"] = cfg.storage  # the real URL: in the run's environment, not in its file or argv
        if cfg.workers.ray_address is not None:
            env.pop("TUNER_RAY_ADDRESS", None)  # it would override the (allowed) cluster the file names
        return env

    def _wait_until_stored(self, run: Run) -> None:
        deadline = time.monotonic() + self._settings.start_timeout_s
        while time.monotonic() < deadline:
            if self._study_exists(run.name):
                return
            code = run.process.poll()
            if code is not None:
                # It may have stored the study just before exiting.
                if self._study_exists(run.name):
                    return
                self.forget(run.name)
                error = run_exit_error(code, run.log_tail())
                # No study is stored, so nothing could delete these later: the error carries what the log said.
                remove_study_files(self._settings, run.name)
                raise error
            time.sleep(0.2)
        logger.warning("study %r is not stored after %.0f s; its run goes on", run.name, self._settings.start_timeout_s)


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for writing, readable by the API's user only (also where it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")
