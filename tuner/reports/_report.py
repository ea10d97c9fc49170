"""Read-only views of a stored study: the JSON of `tuner show --json`, the front without copies, the best
point under one's own limits.

    document = study_document(read_study(study, store))    # configs, the recommendation, every trial
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.reports._explain import explain_trial
from tuner.storage import Bounds, StoredStudy, StoredTrial
from tuner.study import ConfigResult, Recommendation, by_number, config_results, pareto_front, recommend
from tuner.trial import LOAD_METRICS, LoadPoint


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
        "server_restarted": trial.server_restarted,
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


@dataclass(frozen=True)
class CurvePoint:
    """A config at one concurrency, over every load of it that measured there.

    Attributes:
        config: The config and its loads.
        trial: The load whose throughput there is nearest the median (the lower one of two).
        point: Every number the median over those loads (stable only where all were; saturated or
            contaminated where any was).
        loads: How many loads measured the config at that concurrency.
    """

    config: ConfigResult
    trial: StoredTrial
    point: LoadPoint
    loads: int


class Curves:
    """Every config's measured points, to find the best config under limits of one's own.

    A study judges each config at one concurrency, under its own constraints; the stored curves
    hold every concurrency measured, so "the best config under 20 ms p99" has an answer even
    where the study's budget was 50 ms. As the study's own verdict does, it judges a config by the
    median of its loads, at each concurrency, so a config measured three times is not chosen for
    its luckiest load; and the study's bounds on what is not measured per concurrency (a variant's
    accuracy) still hold: a config whose medians break one is never an answer.

    Args:
        results: Every measured config with its loads, their rows read (tuner.study.config_results).
        bounds: The study's constraints.
    """

    def __init__(self, results: Sequence[ConfigResult], bounds: Bounds) -> None:
        per_config = {metric: bound for metric, bound in bounds.items() if metric not in LOAD_METRICS}
        #: The study's bounds every answer holds (on metrics measured once per load, not per concurrency).
        self.held = tuple(per_config)
        eligible = [result for result in results if not result.failed_constraints(per_config)]
        #: How many configs hold the bounds of ``held``: the configs an answer may be.
        self.configs = len(eligible)
        self._points = [point for result in eligible for point in _median_points(result)]
        self._firsts = np.array([p.config.first.number for p in self._points], dtype=np.int64)
        self._concurrency = np.array([p.point.concurrency for p in self._points], dtype=np.int64)
        self._throughput = np.array([p.point.throughput for p in self._points], dtype=float)
        self._p99 = np.array([p.point.latency_p99_ms for p in self._points], dtype=float)

    def __len__(self) -> int:
        return len(self._points)

    def best(self, max_p99_ms: float | None = None, min_throughput: float | None = None) -> CurvePoint | None:
        """The config and concurrency with the highest median throughput whose medians are within the limits
        (ties: the config measured first, at its lowest concurrency); None where none is."""
        within = np.isfinite(self._throughput) & np.isfinite(self._p99)
        if max_p99_ms is not None:
            within &= self._p99 <= max_p99_ms
        if min_throughput is not None:
            within &= self._throughput >= min_throughput
        candidates = np.flatnonzero(within)
        if candidates.size == 0:
            return None
        # lexsort's last key is the primary one.
        order = np.lexsort((self._concurrency[candidates], self._firsts[candidates], -self._throughput[candidates]))
        return self._points[int(candidates[order[0]])]


def _median_points(result: ConfigResult) -> list[CurvePoint]:
    """The config's median point at each concurrency its loads measured, over the loads measured there to
    stability (over the screened ones where none was)."""
    by_concurrency: dict[int, list[tuple[StoredTrial, LoadPoint]]] = {}
    for load in result.loads:
        for point in load.curve:
            by_concurrency.setdefault(point.concurrency, []).append((load, point))
    found = []
    for measured in by_concurrency.values():
        full = [(load, point) for load, point in measured if not point.screened]
        measured = sorted(full or measured, key=lambda item: (item[1].throughput, item[0].number))
        points = [point for _, point in measured]
        medians: dict[str, Any] = {name: float(np.median([getattr(p, name) for p in points])) for name in LOAD_METRICS}
        median = dataclasses.replace(
            points[0],
            **medians,
            stable=all(p.stable for p in points),
            loadgen_saturated=any(p.loadgen_saturated for p in points),
            contaminated=any(p.contaminated for p in points),
        )
        found.append(CurvePoint(result, measured[(len(measured) - 1) // 2][0], median, len(measured)))
    return found
