"""The API's answers, built from a study's snapshot (api.studies).

Trials are read through tuner.storage and configs judged through tuner.study, so the front,
the recommended trial and its reason are the same as the CLI's, the report's and the export's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from api import schemas as s
from api.errors import NoRecommendationError
from api.studies import OpenStudy, Snapshot, trial_of
from tuner.errors import StudyNotFoundError
from tuner.reports import explain_trial, stored_verifications
from tuner.storage import (
    Bounds,
    ConstraintMiss,
    Store,
    StoredTrial,
    StudyInfo,
    live_driver,
    read_info,
    read_trials,
    redact_url,
)
from tuner.study import ConfigResult, interrupted_trials

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
    info = read_info(opened.study)  # now, not as of the last COMPLETE trial: a new run may have changed it
    file = info.study_file
    objectives = file.get("objectives") or [
        {"metric": m, "direction": d} for m, d in zip(info.metric_names, info.directions)
    ]
    if "storage" in file:  # the study file names the database; its password is not for readers
        file = {**file, "storage": redact_url(str(file["storage"]))}
    if not trusted:
        file = _hide_secrets(file)
    return s.StudyDetail(
        **fields,
        study_file=file or None,
        objectives=[s.Objective(**o) for o in objectives],
        constraints={k: s.Bound(**v) for k, v in info.bounds.items()},
        workers=[s.Worker(**w) for w in info.workers],
        worker_cores=info.worker_cores,
        run=run,
        verifications=[s.Verification(**v.as_dict()) for v in stored_verifications(info)],
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


def trial_page(
    opened: OpenStudy, store: Store, state: TrialState | None, feasible: bool | None, offset: int, limit: int
) -> s.TrialPage:
    """The trials by number that are in ``state`` and (in)feasible as asked, ``limit`` of them from ``offset``."""
    trials = opened.trials()
    snap = opened.snapshot(store, trials)
    if state is not None:
        trials = [t for t in trials if t.state == state]
    typed = [snap.typed(t) for t in trials]
    if feasible is not None:
        typed = [t for t in typed if t.feasible == feasible]
    page = typed[offset : offset + limit]
    items = [trial_summary(t, snap.info.bounds) for t in page]
    return s.TrialPage(total=len(typed), offset=offset, limit=limit, items=items)


def trial_summary(trial: StoredTrial, bounds: Bounds) -> s.TrialSummary:
    """One trial's line; ``bounds``: the study's constraints, for saying by how much one failed."""
    return s.TrialSummary(**_summary_of(trial, bounds))


def _summary_of(trial: StoredTrial, bounds: Bounds) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": s.TrialStateName(trial.state.name),
        "params": trial.params,
        "values": list(trial.values) if trial.values is not None else None,
        "feasible": trial.feasible,
        "constraints": trial.constraints,
        "failed_constraints": [constraint_miss(m) for m in trial.failed_constraints(bounds)],
        "metrics": trial.metrics or None,
        "reused_from": trial.reused_from,
        "remeasure_of": trial.remeasure_of,
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
        "fail_reason": trial.fail_reason,
        "pruned_reason": trial.pruned_reason,
        "server_restarted": trial.server_restarted,
    }


def constraint_miss(miss: ConstraintMiss) -> s.ConstraintMiss:
    return s.ConstraintMiss(
        metric=miss.metric,
        value=miss.value,
        bound=miss.bound,
        side=miss.side,
        excess=miss.excess,
        excess_pct=miss.excess_pct,
        text=miss.text(),
    )


def _stored_trial(opened: OpenStudy, store: Store, number: int) -> tuple[FrozenTrial, StoredTrial, Snapshot]:
    """A trial by number, typed with the tuner's rows, and the snapshot it was read with.

    Raises:
        StudyNotFoundError: the study has no such trial.
    """
    trials = opened.trials()
    snap = opened.snapshot(store, trials)
    trial = trial_of(trials, opened.name, number)
    kept = snap.complete.get(number) if trial.state == TrialState.COMPLETE else None
    return trial, kept if kept is not None else read_trials([trial], store)[0], snap


def trial_detail(opened: OpenStudy, store: Store, number: int) -> s.TrialDetail:
    """Everything stored about a trial: Optuna's view of it, the tuner's rows, and what they say.

    Raises:
        StudyNotFoundError: the study has no such trial.
    """
    _, trial, snap = _stored_trial(opened, store, number)
    record = trial.record
    return s.TrialDetail(
        **_summary_of(trial, snap.info.bounds),
        points=list(record.points) if record else [],
        config_pbtxt=record.config_pbtxt if record else None,
        step_configs=dict(record.step_configs) if record else {},
        spec=record.spec if record else None,
        error=record.error if record else None,
        timings_s=trial.timings_s or None,
        accuracy=trial.accuracy,
        default_config=trial.is_default,
        interrupted=trial.interrupted,
        worker=trial.worker,
        server=trial.server,
        explanations=[
            s.Explanation(rule=e.rule, text=e.text)
            for e in explain_trial(trial, snap.info.bounds, snap.info.has_variants)
        ],
    )


def trial_config(opened: OpenStudy, store: Store, number: int) -> str:
    """The config.pbtxt the trial's server was given.

    Raises:
        StudyNotFoundError: the study has no such trial, or no config is stored for it.
    """
    _, trial, _ = _stored_trial(opened, store, number)
    if trial.record is None:
        raise StudyNotFoundError(
            f"trial {number} of study {opened.name!r} has no config stored (state {trial.state.name})"
        )
    return trial.record.config_pbtxt


def config_summary(result: ConfigResult) -> s.ConfigSummary:
    """One config with all its loads, as ``/pareto`` and ``/recommendation`` show it."""
    low, high = result.interval
    return s.ConfigSummary(
        trial=result.number,
        loads=[t.number for t in result.loads],
        values=list(result.values),
        interval=s.Interval(low=low, high=high),
        spread_pct=result.spread_pct,
        feasible=result.feasible,
        params=result.params,
        metrics=dict(result.median_metrics()),  # dict is invariant: a fresh one takes the schema's value type
        default_config=result.is_default,
    )


def pareto(opened: OpenStudy, store: Store) -> s.ParetoFront:
    """The Pareto front over configs and the recommendation, both by the medians of the configs' loads."""
    snap = opened.snapshot(store)
    return snap.once("pareto", lambda: _pareto(opened.name, snap))


def _pareto(name: str, snap: Snapshot) -> s.ParetoFront:
    rec = snap.recommendation
    return s.ParetoFront(
        study=name,
        directions=list(snap.info.directions),
        metric_names=list(snap.info.metric_names),
        recommended_trial=rec.number if rec else None,
        reason=rec.reason if rec else None,
        configs=[config_summary(r) for r in snap.front],
    )


def recommendation(
    opened: OpenStudy, store: Store, max_p99_ms: float | None, min_throughput: float | None
) -> s.Recommendation:
    """The study's verdict without limits; with limits, the best measured point within them.

    Raises:
        NoRecommendationError: no config is feasible, or no point is within the limits.
    """
    snap = opened.snapshot(store)
    limits = s.Limits(max_p99_ms=max_p99_ms, min_throughput=min_throughput)
    if max_p99_ms is None and min_throughput is None:
        return snap.once("verdict", lambda: _verdict(opened.name, snap, limits))
    found = snap.curves.best(max_p99_ms=max_p99_ms, min_throughput=min_throughput)
    if found is None:
        raise NoRecommendationError(_no_point_reason(opened.name, snap, limits))
    trial, point, config = found.trial, found.point, found.config
    over = f"the median of its {found.loads} loads" if found.loads > 1 else "its one load"
    reason = (
        f"trial {trial.number} at concurrency {point.concurrency}: the highest throughput within "
        f"{_within(limits)}, by {over}: {point.throughput:.4g} infer/s at p99 {point.latency_p99_ms:.4g} ms"
    )
    return s.Recommendation(
        study=opened.name,
        limits=limits,
        trial=trial.number,
        params=trial.params,
        point=point,
        config_pbtxt=trial.record.config_pbtxt if trial.record else None,
        reason=reason,
        config=snap.once(("config", config.key), lambda: config_summary(config)),
    )


def _verdict(name: str, snap: Snapshot, limits: s.Limits) -> s.Recommendation:
    rec = snap.recommendation
    if rec is None:
        raise NoRecommendationError(_no_config_reason(name, snap))
    chosen = rec.config.representative
    return s.Recommendation(
        study=name,
        limits=limits,
        trial=chosen.number,
        params=chosen.params,
        point=chosen.point,
        config_pbtxt=chosen.record.config_pbtxt if chosen.record else None,
        reason=rec.reason,
        config=config_summary(rec.config),
        tied=[config_summary(r) for r in rec.tied],
    )


def _no_config_reason(name: str, snap: Snapshot) -> str:
    if not snap.results:
        return f"study {name!r} has no COMPLETE trial yet"
    configs = len(snap.results)
    return (
        f"none of the {configs} config{'s' if configs != 1 else ''} measured in study {name!r} is within "
        "the study's constraints by the median of its loads"
    )


def _within(limits: s.Limits) -> str:
    parts = [
        f"p99 <= {limits.max_p99_ms:g} ms" if limits.max_p99_ms is not None else "",
        f"throughput >= {limits.min_throughput:g} infer/s" if limits.min_throughput is not None else "",
    ]
    return " and ".join(x for x in parts if x)


def _no_point_reason(name: str, snap: Snapshot, limits: s.Limits) -> str:
    within = f"is within {_within(limits)} at any concurrency by the median of its loads there"
    count = len(snap.results)
    measured = f"{count} config{'s' if count != 1 else ''} measured in study {name!r}"
    if not snap.curves.held:
        return f"none of the {measured} {within}"
    held = " and ".join(snap.curves.held)
    return f"of the {measured}, {snap.curves.configs} hold its bound on {held}, and none of them {within}"


def _summary_fields(opened: OpenStudy, store: Store, run_alive: bool | None) -> dict[str, Any]:
    trials = opened.trials()
    snap = opened.snapshot(store, trials)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    starts = [t.datetime_start for t in trials if t.datetime_start]
    updates = [u for u in (t.datetime_complete or t.datetime_start for t in trials) if u is not None]
    rec = snap.recommendation
    alive = _driver_alive(store, opened.name, run_alive)
    return {
        "name": opened.name,
        "state": _state([snap.typed(t) for t in trials], snap.info, alive),
        "directions": list(snap.info.directions),
        "metric_names": list(snap.info.metric_names),
        "trials": s.TrialCounts(total=len(trials), interrupted=interrupted_trials(trials), **counts),
        "best_values": _best_values(snap.front, snap.info),
        "recommended_trial": rec.number if rec else None,
        "datetime_start": min(starts) if starts else None,
        "last_update": max(updates) if updates else None,
    }


def _best_values(front: Sequence[ConfigResult], info: StudyInfo) -> dict[str, float] | None:
    """Per objective, the best median among the front's configs."""
    if not front:
        return None
    return {
        name: (max if direction == "maximize" else min)(r.values[i] for r in front)
        for i, (name, direction) in enumerate(zip(info.metric_names, info.directions))
    }


def _driver_alive(store: Store, name: str, run_alive: bool | None) -> bool:
    """Whether a driver runs the study: the run this API started, else whoever holds its lease
    (a `tuner optimize` started elsewhere, or by this API before it restarted)."""
    if run_alive is not None:
        return run_alive
    return live_driver(store, name) is not None


def _state(trials: Sequence[StoredTrial], info: StudyInfo, run_alive: bool) -> s.StudyState:
    """The study's state; ``run_alive``: a driver runs it (``_driver_alive``).

    RUNNING trials that no driver runs were left by one that died: they will never finish.
    Re-measurements and interrupted trials do not count against the trial budget.
    """
    if run_alive:
        return s.StudyState.RUNNING
    if not trials:
        return s.StudyState.EMPTY
    budget = info.n_trials
    counted = sum(1 for t in trials if t.counted)
    unfinished = any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    if (budget is not None and counted < budget) or unfinished:
        return s.StudyState.STOPPED
    return s.StudyState.COMPLETE
