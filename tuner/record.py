"""Recording a landscape: every config of a study's space measured once on the real server.

    landscape = record_landscape(cfg, store, on_event=print)
    landscape.save(Path("bench/landscapes/text_detection.json"))

The recording is a grid study (``search.sampler: grid``) run through the normal worker pool
and stored like any study, under ``<study>-landscape`` unless named otherwise: stopping it
and running it again measures only the configs still missing.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Callable

import psutil
from optuna.trial import TrialState

from tuner.config import StudyConfig
from tuner.landscape import Landscape
from tuner.results import (
    ATTR_ACCURACY,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_REMEASURE_OF,
    ATTR_REUSED_FROM,
    ATTR_SERVER,
)
from tuner.store import Store, redact_url
from tuner.study import StudyRunner, StudySummary, TrialEvent
from tuner.trial import TrialOutcome


def recording_config(cfg: StudyConfig, study_name: str | None = None) -> StudyConfig:
    """The study file of the grid study that records ``cfg``'s landscape."""
    search = cfg.search.model_copy(
        update={"sampler": "grid", "n_trials": None, "timeout_s": None, "replay": None, "warm_start": False}
    )
    update: dict[str, object] = {"study": study_name or f"{cfg.study}-landscape", "search": search}
    if hasattr(cfg.load, "remeasure"):  # one measurement per config: no fresh loads of the best ones
        update["load"] = cfg.load.model_copy(update={"remeasure": cfg.load.remeasure.model_copy(update={"top": 0})})
    return cfg.model_copy(update=update)


def record_landscape(
    cfg: StudyConfig,
    store: Store,
    on_event: Callable[[TrialEvent], None] | None = None,
    runner: StudyRunner | None = None,
) -> tuple[Landscape, StudySummary]:
    """Measures every config of the space (those not yet measured) and returns the landscape.

    Args:
        cfg: The recording's study file (see ``recording_config``).
        store: Where the grid study lives.
        on_event: Progress callback, as for ``StudyRunner``.
        runner: A runner of ``cfg`` made by the caller (to watch its pool); None makes one.
    """
    runner = runner or StudyRunner(cfg, store, on_event=on_event)
    summary = runner.run(n_trials=None)
    return landscape_of(runner, store), summary


def landscape_of(runner: StudyRunner, store: Store) -> Landscape:
    """What the runner's study has measured, as a landscape."""
    cfg = runner.cfg
    study_file = cfg.model_dump(mode="json") | {"storage": redact_url(cfg.storage)}
    landscape = Landscape(model=cfg.model.name, study=study_file, worker_plan=runner.plan, machine=_machine())
    trials = [
        t for t in runner.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if not t.user_attrs.get(ATTR_INTERRUPTED) and t.user_attrs.get(ATTR_REUSED_FROM) is None
        and ATTR_REMEASURE_OF not in t.user_attrs
    ]
    records = store.records(t._trial_id for t in trials)
    for trial in trials:
        record = records.get(trial._trial_id)
        if record is None:
            continue
        spec = runner.space.to_spec(trial.params)
        failed = trial.state == TrialState.FAIL
        outcome = TrialOutcome(
            spec=spec,
            config_pbtxt=record.config_pbtxt,
            points=() if failed else record.points,
            error=(record.error or trial.user_attrs.get(ATTR_FAIL_REASON) or "failed") if failed else None,
            timings_s=record.timings_s,
            accuracy=trial.user_attrs.get(ATTR_ACCURACY),
            server=trial.user_attrs.get(ATTR_SERVER) or {},
        )
        landscape.add(outcome, dict(trial.params))
    return landscape


def _machine() -> dict[str, object]:
    return {
        "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }
