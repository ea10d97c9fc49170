"""How a trial's measured points become its values and constraints.

What the stored trials then say about configs (medians, the front, the recommendation) is
tuner.study._verdict's; tuner.storage reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.config import StudyConfig
from tuner.trial import LoadPoint


def trial_metrics(point: LoadPoint, accuracy: Mapping[str, Any] | None) -> dict[str, float]:
    """Every metric of a trial at one of its points: the point's and the accuracy check's."""
    return point.metrics() | {"accuracy_drop": float((accuracy or {}).get("accuracy_drop", 0.0))}


def choose_point(
    points: tuple[LoadPoint, ...], cfg: StudyConfig, accuracy: Mapping[str, Any] | None = None
) -> LoadPoint:
    """The point a trial is judged by: the best feasible one by the first objective.

    Where no concurrency meets the constraints, the one that violates them least. Points measured
    to stability are judged; the concurrency search's screened steps only where there is none.
    """
    first = cfg.objectives[0]
    sign = 1.0 if first.direction == "maximize" else -1.0
    points = tuple(p for p in points if not p.screened) or points
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
