"""Read-only views of a stored study: the JSON of `tuner show --json` and plain summaries."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner import results as rs
from tuner.explain import bounds_of, explain_trial
from tuner.store import Store, TrialRecord
from tuner.trial import LoadPoint


def trial_json(
    trial: FrozenTrial, record: TrialRecord | None, bounds: Mapping[str, Mapping[str, float | None]] | None = None
) -> dict[str, Any]:
    """One trial with everything stored about it, and what its numbers say (bounds: the study's constraints)."""
    attrs = trial.user_attrs
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "values": trial.values,
        "feasible": rs.is_feasible(trial),
        "constraints": trial.constraints,
        "metrics": attrs.get(rs.ATTR_METRICS),
        "default_config": bool(attrs.get(rs.ATTR_DEFAULT)),
        "reused_from": attrs.get(rs.ATTR_REUSED_FROM),
        "remeasure_of": attrs.get(rs.ATTR_REMEASURE_OF),
        "fail_reason": attrs.get(rs.ATTR_FAIL_REASON),
        "timings_s": attrs.get("timings_s"),
        "accuracy": attrs.get(rs.ATTR_ACCURACY),
        "server": attrs.get(rs.ATTR_SERVER),
        "worker": attrs.get(rs.ATTR_WORKER),
        "config_pbtxt": record.config_pbtxt if record else None,
        "points": [p.as_dict() for p in record.points] if record else [],
        "explanations": [dataclasses.asdict(e) for e in explain_trial(trial, record, bounds)],
    }


def study_json(study: optuna.Study, store: Store) -> dict[str, Any]:
    """The study name, its directions and metric names, and every trial."""
    trials = study.get_trials(deepcopy=False)
    records = store.records(t._trial_id for t in trials)
    recommended = rs.recommend(study)
    bounds = bounds_of(study)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "metric_names": study.metric_names,
        "recommended_trial": recommended.number if recommended else None,
        "pareto_front": [t.number for t in study.best_trials],
        "trials": [trial_json(t, records.get(t._trial_id), bounds) for t in trials],
    }


def gain(recommended: FrozenTrial, default: FrozenTrial, metric: str) -> float | None:
    """recommended / default of a metric, or None where either lacks it."""
    a = (recommended.user_attrs.get(rs.ATTR_METRICS) or {}).get(metric)
    b = (default.user_attrs.get(rs.ATTR_METRICS) or {}).get(metric)
    if a is None or not b:
        return None
    return a / b


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto front, as ``study.best_trials`` gives it, without copying every trial.

    ``best_trials`` deep-copies the whole study on each call (tens of milliseconds at 1,000
    trials); a server answering many reads uses this instead.
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return front_of(trials, study.directions)


def front_of(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The trials no other feasible COMPLETE trial dominates, in the order given.

    Feasible: every constraint <= 0 (a trial without constraints is feasible), as Optuna judges it.
    Trials with equal values are all on the front or all off it, as in Optuna.
    """
    candidates = [
        t for t in trials
        if t.state == TrialState.COMPLETE and t.values is not None and all(c <= 0.0 for c in t.constraints.values())
    ]
    if not candidates:
        return []
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    loss = np.array([t.values for t in candidates], dtype=float) * signs
    mask = _non_dominated(loss)
    return [t for t, keep in zip(candidates, mask) if keep]


def best_on_front(front: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial | None:
    """The trial of the front best by the first objective (the tuner's recommendation rule)."""
    if not front:
        return None
    maximize = directions[0] == StudyDirection.MAXIMIZE
    return (max if maximize else min)(front, key=lambda t: t.values[0])


def _non_dominated(loss: np.ndarray) -> np.ndarray:
    """Which rows no other row dominates (all <= and one <), minimizing every column."""
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)  # sorted lexicographically
    if unique.shape[1] == 1:
        on_front = unique[:, 0] == unique[0, 0]
    elif unique.shape[1] == 2:
        # Rows before a row have a lower or equal first value; it is dominated iff one has a
        # second value at most its own.
        before = np.minimum.accumulate(unique[:-1, 1])
        on_front = np.concatenate([[True], unique[1:, 1] < before])
    else:
        on_front = np.ones(len(unique), dtype=bool)
        for i, row in enumerate(unique):
            earlier = unique[:i][on_front[:i]]  # a dominator comes earlier in lexicographic order
            on_front[i] = not np.any(np.all(earlier <= row, axis=1))
    return on_front[inverse.reshape(-1)]


class Curves:
    """Every point measured for a set of trials, to find the best one under limits of one's own.

    A study judges each trial at one concurrency, under its own constraints; the stored curves
    hold every concurrency measured, so "the best config under 20 ms p99" has an answer even
    where the study's budget was 50 ms.

    Args:
        points: The measured points of each trial, by trial_id.
        numbers: The trial number of each trial_id (ties go to the lower number: a config
            reused later keeps its first trial).
    """

    def __init__(self, points: Mapping[int, Sequence[LoadPoint]], numbers: Mapping[int, int]) -> None:
        flat = [(trial_id, point) for trial_id, trial_points in points.items() for point in trial_points]
        self._points = [point for _, point in flat]
        self._trial_ids = np.array([trial_id for trial_id, _ in flat], dtype=np.int64)
        self._numbers = np.array([numbers[trial_id] for trial_id, _ in flat], dtype=np.int64)
        self._throughput = np.array([p.throughput for p in self._points], dtype=float)
        self._p99 = np.array([p.latency_p99_ms for p in self._points], dtype=float)

    def __len__(self) -> int:
        return len(self._points)

    def best(
        self, max_p99_ms: float | None = None, min_throughput: float | None = None
    ) -> tuple[int, LoadPoint] | None:
        """The point with the highest throughput whose p99 and throughput are within the limits.

        Returns:
            The trial_id and the point, or None where no point is within the limits.
        """
        within = np.isfinite(self._throughput) & np.isfinite(self._p99)
        if max_p99_ms is not None:
            within &= self._p99 <= max_p99_ms
        if min_throughput is not None:
            within &= self._throughput >= min_throughput
        candidates = np.flatnonzero(within)
        if candidates.size == 0:
            return None
        # lexsort's last key is the primary one: highest throughput, then lowest trial number.
        order = np.lexsort((candidates, self._numbers[candidates], -self._throughput[candidates]))
        best = int(candidates[order[0]])
        return int(self._trial_ids[best]), self._points[best]
