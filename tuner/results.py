"""How measurements become a trial's values and constraints, and trials a recommendation.

The trial attributes the tuner writes (``ATTR_*``) are read here and by every view of a study.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config import StudyConfig
from tuner.trial import LoadPoint

ATTR_METRICS = "metrics"
ATTR_SPEC_KEY = "spec_key"
ATTR_FAIL_REASON = "fail_reason"
ATTR_REUSED_FROM = "reused_from"
ATTR_DEFAULT = "default_config"
ATTR_INTERRUPTED = "interrupted"
ATTR_STUDY_FILE = "study_file"
ATTR_WORKER_CORES = "worker_cores"
ATTR_WORKERS = "workers"
ATTR_WORKER = "worker"
ATTR_ACCURACY = "accuracy"
ATTR_SERVER = "server"
ATTR_REMEASURE_OF = "remeasure_of"


def trial_metrics(point: LoadPoint, accuracy: Mapping[str, Any] | None) -> dict[str, float]:
    """Every metric of a trial at one of its points: the point's and the accuracy check's."""
    return point.metrics() | {"accuracy_drop": float((accuracy or {}).get("accuracy_drop", 0.0))}


def choose_point(points: tuple[LoadPoint, ...], cfg: StudyConfig, accuracy: Mapping[str, Any] | None = None) -> LoadPoint:
    """The point a trial is judged by: the best feasible one by the first objective.

    Where no concurrency meets the constraints, the one that violates them least.
    """
    first = cfg.objectives[0]
    sign = 1.0 if first.direction == "maximize" else -1.0
    feasible = [p for p in points if violation(trial_metrics(p, accuracy), cfg) == 0.0]
    if feasible:
        return max(feasible, key=lambda p: sign * trial_metrics(p, accuracy)[first.metric])
    return min(points, key=lambda p: violation(trial_metrics(p, accuracy), cfg))


def constraint_values(metrics: dict[str, float], cfg: StudyConfig) -> dict[str, float]:
    """Optuna constraint values by metric: <= 0 where the bound holds, the excess otherwise."""
    values = {}
    for metric, bound in cfg.constraints.items():
        value = metrics[metric]
        excess = []
        if bound.max is not None:
            excess.append(value - bound.max)
        if bound.min is not None:
            excess.append(bound.min - value)
        values[metric] = max(excess)
    return values


def violation(metrics: dict[str, float], cfg: StudyConfig) -> float:
    return sum(max(0.0, v) for v in constraint_values(metrics, cfg).values())


def is_feasible(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.COMPLETE and all(v <= 0.0 for v in trial.constraints.values())


def recommend(study: optuna.Study) -> FrozenTrial | None:
    """The feasible trial that is best by the study's first objective.

    Where the best configs were measured again (see ``confirmed``), the config with the best
    median of its measurements wins, and its trial nearest that median stands for it.
    """
    confirmed = confirmed_groups(study)
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    if confirmed:
        medians = {number: median_trial(group) for number, group in confirmed.items()}
        feasible = [t for t in medians.values() if is_feasible(t)]
        if feasible:
            return (max if maximize else min)(feasible, key=lambda t: t.values[0])
    front = study.best_trials
    if not front:
        return None
    return (max if maximize else min)(front, key=lambda t: t.values[0])


def confirmed_groups(study: optuna.Study) -> dict[int, list[FrozenTrial]]:
    """Configs measured again at the end of the study: by the original trial's number, the
    original and every completed re-measurement."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    groups: dict[int, list[FrozenTrial]] = {}
    for trial in trials:
        source = trial.user_attrs.get(ATTR_REMEASURE_OF)
        if source is not None:
            groups.setdefault(int(source), []).append(trial)
    by_number = {t.number: t for t in trials}
    return {n: [by_number[n], *group] for n, group in groups.items() if n in by_number}


def median_trial(group: list[FrozenTrial]) -> FrozenTrial:
    """The trial whose first value is the (lower) median of the group's."""
    ordered = sorted(group, key=lambda t: t.values[0])
    return ordered[(len(ordered) - 1) // 2]


def default_trial(study: optuna.Study) -> FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get(ATTR_DEFAULT):
            return trial
    return None
