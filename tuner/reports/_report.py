"""Read-only views of a stored study: the JSON of `tuner show --json`, the front without copies, the best
point under one's own limits.

    document = study_document(read_study(study, store))    # configs, the recommendation, every trial
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuner.reports._explain import explain_trial
from tuner.storage import Bounds, StoredStudy, StoredTrial
from tuner.study import ConfigResult, Recommendation, by_number, config_results, pareto_front, recommend
from tuner.trial import LoadPoint


def stored_trial_json(trial: StoredTrial, bounds: Bounds | None = None, variants: bool = True) -> dict[str, Any]:
    """One trial with everything stored about it, and what its numbers say (bounds: the study's constraints;
    variants: whether the model has precision and accelerator knobs)."""
    record = trial.record
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "values": list(trial.values) if trial.values is not None else None,
        "feasible": trial.feasible,
        "constraints": trial.constraints,
        "failed_constraints": [m.text() for m in trial.failed_constraints(bounds or {})],
        "metrics": trial.metrics or None,
        "default_config": trial.is_default,
        "reused_from": trial.reused_from,
        "remeasure_of": trial.remeasure_of,
        "fail_reason": trial.fail_reason,
        "pruned_reason": trial.pruned_reason,
        "timings_s": trial.timings_s or None,
        "accuracy": trial.accuracy,
        "server": trial.server or None,
        "worker": trial.worker,
        "config_pbtxt": record.config_pbtxt if record else None,
        "points": [p.as_dict() for p in record.points] if record else [],
        "explanations": [dataclasses.asdict(e) for e in explain_trial(trial, bounds, variants)],
    }


def config_json(result: ConfigResult, bounds: Bounds) -> dict[str, Any]:
    """One config: the trial that stands for it, its loads, and the medians it is judged by."""
    return {
        "trial": result.number,
        "loads": [t.number for t in result.loads],
        "params": result.params,
        "values": list(result.values),
        "interval": list(result.interval),
        "spread_pct": result.spread_pct,
        "feasible": result.feasible,
        "failed_constraints": [m.text() for m in result.failed_constraints(bounds)],
        "default_config": result.is_default,
        "metrics": result.median_metrics(),
    }


def recommendation_json(rec: Recommendation | None) -> dict[str, Any] | None:
    """The recommended config's trial, the leader's, the tie, and the reason."""
    if rec is None:
        return None
    return {
        "trial": rec.number,
        "leader": rec.leader.number,
        "tied": [r.number for r in rec.tied],
        "reason": rec.reason,
    }


def study_document(stored: StoredStudy) -> dict[str, Any]:
    """The study, its configs and recommendation (tuner.study), every trial, and the verifications of its
    recommendations (``tuner verify``).

    ``recommended_trial`` and ``pareto_front`` name the trials that stand for the configs
    (``ConfigResult.representative``); each trial names its config's in ``config``.
    """
    info = stored.info
    results = config_results(stored.trials, info)
    rec = recommend(results, info)
    configs = by_number(results)
    trials = []
    for trial in stored.trials:
        document = stored_trial_json(trial, info.bounds, info.has_variants)
        document["config"] = configs[trial.number].number if trial.number in configs else None
        trials.append(document)
    return {
        "study": info.name,
        "directions": list(info.directions),
        "metric_names": list(info.metric_names),
        "recommended_trial": rec.number if rec else None,
        "recommendation": recommendation_json(rec),
        "pareto_front": [r.number for r in pareto_front(results, info.directions)],
        "configs": [config_json(r, info.bounds) for r in results],
        "trials": trials,
        "verifications": list(info.verifications),  # tuner verify's results, oldest first
    }


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
