"""Recording a landscape: every config of a study's space measured once on the real server.

    landscape = record_landscape(cfg, store, on_event=print)
    landscape.save(Path("bench/landscapes/text_detection.json"))

The recording is a grid study (``search.sampler: grid``) run through the normal worker pool
and stored like any study, under ``<study>-landscape`` unless named otherwise: stopping it
and running it again measures only the configs still missing.

The file's ``machine`` block (``recording_machine``) says where it was measured: the CPU model,
cores, memory, and the versions of Triton (the server's own, asked of one server of the study's
launch mode once the grid is measured), ONNX Runtime and perf_analyzer (``tuner.triton.versions``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
from optuna.trial import TrialState

from tuner.config import ServerSettings, StudyConfig
from tuner.errors import TunerError
from tuner.replay import Landscape
from tuner.storage import Store, read_study, redact_url
from tuner.study._runner import RunSummary, StudyRunner, TrialEvent
from tuner.trial import TrialOutcome
from tuner.triton import cpu_model, make_server, server_version, versions, worker_gpus

logger = logging.getLogger(__name__)


def recording_config(cfg: StudyConfig, study_name: str | None = None) -> StudyConfig:
    """The study file of the grid study that records ``cfg``'s landscape."""
    search = cfg.search.model_copy(
        update={"sampler": "grid", "n_trials": None, "timeout_s": None, "replay": None, "warm_start": False}
    )
    update: dict[str, object] = {"study": study_name or f"{cfg.study}-landscape", "search": search}
    # one full measurement per config: no fresh loads of the best ones, no config stopped after its screen,
    # every step of the concurrency search measured to stability
    search_steps = cfg.load.concurrency_search.model_copy(update={"screened_steps": False})
    load = cfg.load.model_copy(
        update={
            "early_stop": cfg.load.early_stop.model_copy(update={"enabled": False}),
            "concurrency_search": search_steps,
        }
    )
    update["load"] = load.model_copy(update={"remeasure": load.remeasure.model_copy(update={"loads": 0})})
    return cfg.model_copy(update=update)


def record_landscape(
    cfg: StudyConfig,
    store: Store,
    on_event: Callable[[TrialEvent], None] | None = None,
    runner: StudyRunner | None = None,
) -> tuple[Landscape, RunSummary]:
    """Measures every config of the space (those not yet measured) and returns the landscape.

    Args:
        cfg: The recording's study file (see ``recording_config``).
        store: Where the grid study lives.
        on_event: Progress callback, as for ``StudyRunner``.
        runner: A runner of ``cfg`` made by the caller (to watch its pool); None makes one.
    """
    runner = runner or StudyRunner(cfg, store, on_event=on_event)
    summary = runner.run(n_trials=None)
    landscape = landscape_of(runner, store, recording_machine(triton_version(cfg.server)))
    return landscape, summary


def landscape_of(runner: StudyRunner, store: Store, machine: dict[str, object] | None = None) -> Landscape:
    """What the runner's study has measured, as a landscape; ``machine`` as ``recording_machine`` gives it."""
    cfg = runner.cfg
    study_file = cfg.model_dump(mode="json") | {"storage": redact_url(cfg.storage)}
    machine = machine if machine is not None else recording_machine()
    landscape = Landscape(model=cfg.model.name, study=study_file, worker_plan=runner.plan.workers, machine=machine)
    stored = read_study(runner.study, store)
    for trial in stored.trials:
        measured = trial.complete or trial.state == TrialState.FAIL
        if not measured or trial.interrupted or trial.reused_from is not None or trial.remeasure_of is not None:
            continue
        record = trial.record
        if record is None:
            continue
        failed = trial.state == TrialState.FAIL
        outcome = TrialOutcome(
            spec=runner.space.to_spec(trial.params),
            config_pbtxt=record.config_pbtxt,
            points=() if failed else record.points,
            error=(trial.fail_reason or "failed") if failed else None,
            timings_s=record.timings_s,
            accuracy=trial.accuracy,
            server=trial.server,
        )
        landscape.add(outcome, dict(trial.params))
    return landscape


def recording_machine(triton: str | None = None) -> dict[str, object]:
    """Where a landscape is measured: when, the system, the CPU model, cores, memory and the software versions.

    Args:
        triton: The version the study's Triton server reports (``triton_version``); None leaves it out.
    """
    found = versions()
    if triton is not None:
        found = {"triton": triton, **found}
    return {
        "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": found,
    }


def triton_version(settings: ServerSettings) -> str | None:
    """The version one server of the study's launch mode reports, started on an empty repository.

    None where it does not start: the version is a note for the reader, and the recording stands without it.
    """
    with tempfile.TemporaryDirectory(prefix="tuner-version-") as tmp:
        repository = Path(tmp) / "repository"
        repository.mkdir()
        try:
            with make_server(settings, Path(tmp) / "server", repository, gpu=worker_gpus()) as server:
                return server_version(server)
        except TunerError as exc:
            logger.warning("no Triton version for the landscape: %s", exc)
            return None
