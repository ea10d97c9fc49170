"""Read-only views of a stored study: the JSON of `tuner show --json` and plain summaries."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tuner import results as rs
from tuner.store import Store, TrialRecord


def trial_json(trial: FrozenTrial, record: TrialRecord | None) -> dict[str, Any]:
    """One trial with everything stored about it."""
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
        "fail_reason": attrs.get(rs.ATTR_FAIL_REASON),
        "timings_s": attrs.get("timings_s"),
        "config_pbtxt": record.config_pbtxt if record else None,
        "points": [p.as_dict() for p in record.points] if record else [],
    }


def study_json(study: optuna.Study, store: Store) -> dict[str, Any]:
    """The study name, its directions and metric names, and every trial."""
    trials = study.get_trials(deepcopy=False)
    records = store.records(t._trial_id for t in trials)  # noqa: SLF001
    recommended = rs.recommend(study)
    return {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "metric_names": study.metric_names,
        "recommended_trial": recommended.number if recommended else None,
        "pareto_front": [t.number for t in study.best_trials],
        "trials": [trial_json(t, records.get(t._trial_id)) for t in trials],  # noqa: SLF001
    }


def gain(recommended: FrozenTrial, default: FrozenTrial, metric: str) -> float | None:
    """recommended / default of a metric, or None where either lacks it."""
    a = (recommended.user_attrs.get(rs.ATTR_METRICS) or {}).get(metric)
    b = (default.user_attrs.get(rs.ATTR_METRICS) or {}).get(metric)
    if a is None or not b:
        return None
    return a / b
