"""Studies as the API shows them: open studies kept between requests, and the views built from them.

Optuna's study object keeps finished trials in memory and asks the database only for trials that
are new or still running, so keeping one per study makes each read after the first cheap, also
while the study runs. Finished trials never change, so what the COMPLETE trials say (the Pareto
front, the measured curves, the configs) is worked out once per new COMPLETE trial (a
``Snapshot``) instead of once per request. A study is looked up by name on every request and its
kept object used only while the id matches, so a study deleted and created again is never stale.

With ``refresh_s`` > 0, a study's name and trials are read from the database at most that often
and requests in between are answered from memory: reads may be that much behind a running study,
and a busy server spends its time answering instead of asking the database again.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from api import schemas as s
from tuner import report
from tuner import results as rs
from tuner.lease import live_driver
from tuner.store import Store, StudyNotFoundError, redact_url
from tuner.trial import LoadPoint


@dataclass(frozen=True)
class Snapshot:
    """What a study's COMPLETE trials say; it holds until another trial completes.

    Attributes:
        complete: The COMPLETE trials by trial_id, in number order.
        directions: The study's directions.
        metric_names: The study's metric names, if set.
        front: The feasible Pareto front.
        best: The recommended trial: the front's best by the first objective.
        points: The measured curve of each COMPLETE trial, by trial_id.
        configs: The config.pbtxt of each COMPLETE trial, by trial_id.
        curves: ``points`` arranged for questions under limits.
    """

    complete: dict[int, FrozenTrial]
    directions: list[StudyDirection]
    metric_names: list[str] | None
    front: list[FrozenTrial]
    best: FrozenTrial | None
    points: dict[int, tuple[LoadPoint, ...]]
    configs: dict[int, str]
    curves: report.Curves


class OpenStudy:
    """A study kept open between requests, with the snapshot of its COMPLETE trials.

    Args:
        study: The study.
        study_id: Its id in the storage.
        refresh_s: Read its trials again after this many seconds at the earliest (0: always).
    """

    def __init__(self, study: optuna.Study, study_id: int, refresh_s: float = 0.0) -> None:
        self.study = study
        self.study_id = study_id
        self.refresh_s = refresh_s
        self.checked_at = time.monotonic()
        self._snapshot: Snapshot | None = None
        self._trials: list[FrozenTrial] | None = None
        self._read_at = 0.0
        self._reading = threading.Lock()
        self.checking = threading.Lock()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.study.study_name

    def trials(self) -> list[FrozenTrial]:
        """The study's trials by number, not copied: read them, never change them."""
        trials = self._trials
        if trials is None or self.refresh_s == 0:
            return self._read_trials()
        if time.monotonic() - self._read_at < self.refresh_s:
            return trials
        # One request reads the database; the others meanwhile answer from the trials read before.
        if not self._reading.acquire(blocking=False):
            return trials
        try:
            return self._read_trials()
        finally:
            self._reading.release()

    def _read_trials(self) -> list[FrozenTrial]:
        now = time.monotonic()
        trials = self.study.get_trials(deepcopy=False)
        self._trials, self._read_at = trials, now
        return trials

    def snapshot(self, store: Store, trials: Sequence[FrozenTrial] | None = None) -> Snapshot:
        """The snapshot of the COMPLETE trials among ``trials`` (default: the study's now)."""
        trials = self.trials() if trials is None else trials
        complete = {t._trial_id: t for t in trials if t.state == TrialState.COMPLETE}  # noqa: SLF001
        with self._lock:
            old = self._snapshot
            # COMPLETE is final: the same count is the same set of trials.
            if old is not None and len(old.complete) >= len(complete):
                return old
            snapshot = _build_snapshot(self.study, store, complete, old)
            self._snapshot = snapshot
        _settle_memory()
        return snapshot


def _build_snapshot(
    study: optuna.Study, store: Store, complete: dict[int, FrozenTrial], old: Snapshot | None
) -> Snapshot:
    points = dict(old.points) if old else {}
    configs = dict(old.configs) if old else {}
    new = [trial_id for trial_id in complete if trial_id not in points]
    for trial_id, record in store.records(new).items():
        points[trial_id] = record.points
        configs[trial_id] = record.config_pbtxt
    directions = list(study.directions)
    front = report.front_of(list(complete.values()), directions)
    numbers = {trial_id: t.number for trial_id, t in complete.items()}
    return Snapshot(
        complete=complete,
        directions=directions,
        metric_names=study.metric_names,
        front=front,
        best=report.best_on_front(front, directions),
        points=points,
        configs=configs,
        curves=report.Curves({i: points[i] for i in complete if i in points}, numbers),
    )


def _settle_memory() -> None:
    """Takes the objects alive now (open studies, their trials, snapshots) out of the collector's view.

    They live as long as the server, and a full collection walks every one of them: with a study
    of 1,000 trials that paused every request in flight for ~80 ms every few seconds. Collecting
    first leaves no garbage behind in the frozen set; later collections walk only newer objects.
    """
    gc.collect()
    gc.freeze()


class StudyCache:
    """The open studies, by name, opened on first use.

    Args:
        store: The storage the studies live in.
        refresh_s: Look a name up (and read a study's trials) again after this many seconds at
            the earliest; 0 reads the database on every request.
    """

    def __init__(self, store: Store, refresh_s: float = 0.0) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._open: dict[str, OpenStudy] = {}

    def get(self, name: str) -> OpenStudy:
        """The study of that name.

        Raises:
            StudyNotFoundError: there is none.
        """
        with self._lock:
            kept = self._open.get(name)
        if kept is not None and self._refresh_s > 0:
            if time.monotonic() - kept.checked_at < self._refresh_s:
                return kept
            if not kept.checking.acquire(blocking=False):
                return kept  # another request is looking the name up
            try:
                return self._check(name, kept)
            finally:
                kept.checking.release()
        return self._check(name, kept)

    def _check(self, name: str, kept: OpenStudy | None) -> OpenStudy:
        now = time.monotonic()
        study_id = self._store.study_id(name)
        if kept is not None and kept.study_id == study_id:
            kept.checked_at = now
            return kept
        try:
            study = self._store.load_study(name)
        except StudyNotFoundError:
            raise StudyNotFoundError(f"no study {name!r}") from None
        opened = OpenStudy(study, study_id, self._refresh_s)
        with self._lock:
            self._open[name] = opened
        return opened

    def forget(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)


def trial_of(trials: Sequence[FrozenTrial], name: str, number: int) -> FrozenTrial:
    """The trial of that number.

    Raises:
        StudyNotFoundError: the study has no such trial.
    """
    if 0 <= number < len(trials) and trials[number].number == number:
        return trials[number]
    for trial in trials:  # numbers are 0..n-1; this only runs if Optuna ever changes that
        if trial.number == number:
            return trial
    raise StudyNotFoundError(f"study {name!r} has no trial {number} (it has {len(trials)})")


#: Fields of a study file that can hold a secret (``-e HF_TOKEN=...``): shown to holders of the token only.
SECRET_FIELDS = (("server", "docker_args"),)
HIDDEN = "***"


def summary(opened: OpenStudy, store: Store, run_alive: bool | None) -> s.StudySummary:
    """The study's line in ``GET /studies``.

    ``run_alive``: whether the run this API started is alive; None where this API started none.
    """
    return s.StudySummary(**_summary_fields(opened, store, run_alive))


def detail(opened: OpenStudy, store: Store, run: s.RunInfo | None, trusted: bool = False) -> s.StudyDetail:
    """Everything ``GET /studies/{name}`` shows; ``trusted`` (the reader has the token) shows ``SECRET_FIELDS``."""
    fields = _summary_fields(opened, store, run.alive if run is not None else None)
    attrs = opened.study.user_attrs
    study_file = attrs.get(rs.ATTR_STUDY_FILE)
    file = study_file if isinstance(study_file, dict) else {}
    names = fields["metric_names"] or [f"objective_{i}" for i in range(len(fields["directions"]))]
    objectives = file.get("objectives") or [{"metric": m, "direction": d} for m, d in zip(names, fields["directions"])]
    if "storage" in file:  # the study file names the database; its password is not for readers
        file = {**file, "storage": redact_url(str(file["storage"]))}
    if not trusted:
        file = _hide_secrets(file)
    return s.StudyDetail(
        **fields,
        study_file=file or None,
        objectives=[s.Objective(**o) for o in objectives],
        constraints={k: s.Bound(**v) for k, v in (file.get("constraints") or {}).items()},
        workers=[s.Worker(**w) for w in attrs.get(rs.ATTR_WORKERS) or []],
        worker_cores=attrs.get(rs.ATTR_WORKER_CORES),
        run=run,
    )


def _hide_secrets(file: dict[str, Any]) -> dict[str, Any]:
    """The study file with each item of ``SECRET_FIELDS`` replaced by ``HIDDEN`` (so its count still shows)."""
    for section, field in SECRET_FIELDS:
        part = file.get(section)
        if isinstance(part, dict) and part.get(field):
            value = part[field]
            hidden = [HIDDEN] * len(value) if isinstance(value, list) else HIDDEN
            file = {**file, section: {**part, field: hidden}}
    return file


def trial_summary(trial: FrozenTrial) -> s.TrialSummary:
    return s.TrialSummary(
        number=trial.number,
        state=s.TrialStateName(trial.state.name),
        params=trial.params,
        values=trial.values,
        feasible=rs.is_feasible(trial),
        constraints=trial.constraints,
        metrics=trial.user_attrs.get(rs.ATTR_METRICS),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
    )


def trial_detail(
    store: Store, trial: FrozenTrial, bounds: Mapping[str, Mapping[str, float | None]] | None = None
) -> s.TrialDetail:
    """Everything stored about a trial: Optuna's view of it, the tuner's rows, and what they say.

    ``bounds``: the study's constraints (``tuner.explain.bounds_of``), for saying by how much one failed.
    """
    record = store.records([trial._trial_id]).get(trial._trial_id)  # noqa: SLF001 - the tuner's rows are keyed by it
    base = report.trial_json(trial, record, bounds)
    attrs = trial.user_attrs
    return s.TrialDetail(
        **trial_summary(trial).model_dump(),
        points=list(record.points) if record else [],
        config_pbtxt=base["config_pbtxt"],
        spec=record.spec if record else None,
        error=record.error if record else None,
        fail_reason=base["fail_reason"],
        timings_s=base["timings_s"],
        accuracy=attrs.get("accuracy"),
        default_config=base["default_config"],
        reused_from=base["reused_from"],
        worker=attrs.get(rs.ATTR_WORKER),
        user_attrs=dict(attrs),
        explanations=[s.Explanation(**e) for e in base["explanations"]],
    )


def pareto(opened: OpenStudy, store: Store) -> s.ParetoFront:
    snap = opened.snapshot(store)
    return s.ParetoFront(
        study=opened.name,
        directions=[d.name.lower() for d in snap.directions],
        metric_names=snap.metric_names,
        recommended_trial=snap.best.number if snap.best else None,
        trials=[trial_summary(t) for t in snap.front],
    )


def _summary_fields(opened: OpenStudy, store: Store, run_alive: bool | None) -> dict[str, Any]:
    trials = opened.trials()
    snap = opened.snapshot(store, trials)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    best_values = None
    if snap.front:
        names = snap.metric_names or [f"objective_{i}" for i in range(len(snap.directions))]
        best_values = {
            name: (max if d == StudyDirection.MAXIMIZE else min)(t.values[i] for t in snap.front)
            for i, (name, d) in enumerate(zip(names, snap.directions))
        }
    starts = [t.datetime_start for t in trials if t.datetime_start]
    updates = [u for u in (t.datetime_complete or t.datetime_start for t in trials) if u is not None]
    return {
        "name": opened.name,
        "state": _state(opened.study, trials, _driver_alive(store, opened.study.study_name, run_alive)),
        "directions": [d.name.lower() for d in snap.directions],
        "metric_names": snap.metric_names,
        "trials": s.TrialCounts(total=len(trials), **counts),
        "best_values": best_values,
        "recommended_trial": snap.best.number if snap.best else None,
        "datetime_start": min(starts) if starts else None,
        "last_update": max(updates) if updates else None,
    }


def _driver_alive(store: Store, name: str, run_alive: bool | None) -> bool:
    """Whether a driver runs the study: the run this API started, else whoever holds its lease
    (a `tuner optimize` started elsewhere, or by this API before it restarted)."""
    if run_alive is not None:
        return run_alive
    return live_driver(store, name) is not None


def _state(study: optuna.Study, trials: Sequence[FrozenTrial], run_alive: bool) -> s.StudyState:
    """The study's state; ``run_alive``: a driver runs it (``_driver_alive``).

    RUNNING trials that no driver runs were left by one that died: they will never finish.
    """
    left_running = any(t.state == TrialState.RUNNING for t in trials)
    if run_alive:
        return s.StudyState.RUNNING
    if not trials:
        return s.StudyState.EMPTY
    budget = _budget(study)
    counted = sum(1 for t in trials if t.state.is_finished() and not t.user_attrs.get(rs.ATTR_INTERRUPTED))
    unfinished = left_running or any(t.state == TrialState.WAITING for t in trials)
    if (budget is not None and counted < budget) or unfinished:
        return s.StudyState.STOPPED
    return s.StudyState.COMPLETE


def _budget(study: optuna.Study) -> int | None:
    study_file = study.user_attrs.get(rs.ATTR_STUDY_FILE)
    if not isinstance(study_file, dict):
        return None
    n_trials = (study_file.get("search") or {}).get("n_trials")
    return n_trials if isinstance(n_trials, int) else None
