"""Verifications started over HTTP: each runs `tuner verify NAME` in a child process.

A verification measures a stored study's config on a fresh server, so it is refused while the
study runs (a run this API started, or any tuner that holds the study's lease: their trials would
share the cores), while another verification of the study runs, and where the study file the
study stored chooses what the API's operator does not allow (``api.confine``: the same rules as a
posted study file). It is started like a study run (``api.runs``): its storage URL in
``$TUNER_STORAGE``, never on its command line; its output in ``WORK/studies/verify-<name>.log``,
readable by the API's user only; in a session of its own. The result is stored with the study
(``GET /studies/{name}``, ``verifications``); ``GET /studies/{name}/verify`` tells whether the
last one started here still runs and how it ended. Deleting the study stops its verification and
removes the log; the API stops every verification when it shuts down (SIGTERM, as a run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna

from api.confine import check_choices, check_paths, own_ray_address
from api.errors import ConflictError
from api.runs import RunSlots, open_private, stop_process
from api.settings import ApiSettings
from tuner.errors import ConfigError, ExitCode
from tuner.reports import MAX_REPEATS, choose_target, study_config
from tuner.storage import ATTR_STUDY_FILE, Store, live_driver, read_study

logger = logging.getLogger(__name__)

#: The command of a verification, before its arguments.
VERIFY_COMMAND = (sys.executable, "-m", "tuner.cli", "verify")
#: Environment variables a verification does not inherit.
_PRIVATE_ENV = ("TUNER_API_TOKEN",)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: Exit codes of `tuner verify` and what they mean; any other (3: its server, perf_analyzer or the storage
#: failed; 130, 143: stopped) is ``failed``.
OUTCOMES: dict[int, str] = {ExitCode.OK: "holds", ExitCode.DOES_NOT_HOLD: "does not hold", ExitCode.INPUT: "refused"}


@dataclass
class VerifyRun:
    """A `tuner verify` process started by the API."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    trial: int | None
    repeats: int

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def outcome(self) -> str:
        """``running``, ``holds``, ``does not hold``, ``refused`` (bad input), ``inconclusive`` (it did not hold on
        runs that shared the CPU: exit code 3 with that verdict as its last line) or ``failed`` (the
        environment, a stop)."""
        code = self.process.poll()
        if code == ExitCode.ENVIRONMENT and self.last_line().startswith("inconclusive: "):
            return "inconclusive"
        return "running" if code is None else OUTCOMES.get(code, "failed")

    def last_line(self) -> str:
        """The last line of its output: the verdict, or why it was refused or failed."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:1000] if lines else ""


def log_path(settings: ApiSettings, name: str) -> Path:
    """Where the output of study ``name``'s verifications goes: never a path the name chose."""
    safe = name if _SAFE_NAME.fullmatch(name) else hashlib.sha256(name.encode()).hexdigest()[:16]
    return settings.work_dir / "studies" / f"verify-{safe}.log"


def check_verifiable(study: optuna.Study, settings: ApiSettings, trial: int | None, repeats: int) -> None:
    """Refuses what `tuner verify` would refuse, and a study file the API does not allow.

    Raises:
        ConfigError: the study stored no study file, it no longer validates, or it chooses what
            the API does not allow (naming the field); ``repeats`` out of range.
        StudyNotFoundError: no trial ``trial``, or no feasible config to verify.
    """
    if not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(f"repeats: between 1 and {MAX_REPEATS} runs, not {repeats}")
    stored = read_study(study)
    choose_target(stored.trials, stored.info, trial)
    data = study.user_attrs.get(ATTR_STUDY_FILE)
    if isinstance(data, dict):
        check_paths(data, settings)
    check_choices(study_config(study), settings, own_ray_address())


class VerifyManager:
    """Starts and tracks the verifications of studies.

    Args:
        settings: The API's settings (work folder, storage).
        slots: The runs alive at once, shared with the studies' runs.
        command: The command a verification is, before the study's name and options.
    """

    def __init__(self, settings: ApiSettings, slots: RunSlots, command: Sequence[str] = VERIFY_COMMAND) -> None:
        self._settings = settings
        self._slots = slots
        self._command = tuple(command)
        self._runs: dict[str, VerifyRun] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> VerifyRun | None:
        with self._lock:
            return self._runs.get(name)

    def start(self, name: str, store: Store, study_running: bool, trial: int | None, repeats: int) -> VerifyRun:
        """Starts `tuner verify` on study ``name`` in the background.

        Args:
            name: The study, which exists and passed ``check_verifiable``.
            store: The storage (whose leases say whether another tuner runs the study).
            study_running: A run this API started is alive.
            trial: The trial whose config to verify; None: the recommendation.
            repeats: Runs, each on a fresh load.

        Raises:
            ConflictError: the study runs, or a verification of it runs, or ``slots`` are all taken.
        """
        self.check_idle(name, store, study_running)
        with self._lock:
            current = self._runs.get(name)
            if current is not None and current.alive:
                raise ConflictError(f"a verification of study {name!r} is running (pid {current.process.pid})")
            run = self._slots.claim(f"a verification of study {name!r}", lambda: self._launch(name, trial, repeats))
            self._runs[name] = run
        return run

    def check_idle(self, name: str, store: Store, study_running: bool) -> None:
        """Raises ConflictError where the study or a verification of it runs (see ``start``)."""
        if study_running:
            raise ConflictError(f"study {name!r} is running: verify it once its run has ended")
        driver = live_driver(store, name)
        if driver is not None:
            raise ConflictError(
                f"study {name!r} is being run by a tuner this API did not start: {driver.describe(time.time())}"
            )
        current = self.get(name)
        if current is not None and current.alive:
            raise ConflictError(f"a verification of study {name!r} is running (pid {current.process.pid})")

    def stop(self, name: str) -> bool:
        """Stops the verification of a study, if one this API started is alive; True if it did.

        SIGTERM, which `tuner verify` handles like Ctrl-C (it stops its server); the process group
        is killed after ``stop_timeout_s``.
        """
        run = self.get(name)
        if run is None or not run.alive:
            return False
        stop_process(run.process, self._settings.stop_timeout_s, f"the verification of study {name!r}")
        return True

    def stop_all(self) -> None:
        """Stops every verification still alive (the API is shutting down), all at once."""
        with self._lock:
            names = [name for name, run in self._runs.items() if run.alive]
        if names:
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stop-verify") as pool:
                list(pool.map(self.stop, names))

    def forget(self, name: str) -> None:
        with self._lock:
            self._runs.pop(name, None)

    def remove(self, name: str) -> None:
        """Stops and forgets the verification of a study and removes its log (the study is deleted)."""
        self.stop(name)
        self.forget(name)
        log_path(self._settings, name).unlink(missing_ok=True)

    def _launch(self, name: str, trial: int | None, repeats: int) -> VerifyRun:
        folder = self._settings.work_dir / "studies"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = log_path(self._settings, name)
        args = [*self._command, name, "--repeats", str(repeats)]
        if trial is not None:
            args += ["--trial", str(trial)]
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env["TUNER_STORAGE"] = self._settings.storage  # the real URL: in its environment, not in its argv
        with open_private(log) as out:
            process = subprocess.Popen(
                args,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                umask=0o077,
            )
        logger.info("started a verification of study %r: pid %d, log %s", name, process.pid, log)
        return VerifyRun(name, process, log, trial, repeats)
