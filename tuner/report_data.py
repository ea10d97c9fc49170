"""A stored study gathered for reports: every trial with its rows and readings, the front, the marks.

    data = gather(study, store)
    data.top()          # the configs worth a closer look: the front by the first objective, and the default

The HTML report (tuner.html_report), the PNG charts (tuner.png_report) and `tuner compare` all
draw from one ``StudyData``; nothing here draws.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner import report
from tuner import results as rs
from tuner.explain import Explanation, bounds_of, explain_trial, point_of
from tuner.store import Store, TrialRecord
from tuner.trial import LoadPoint

logger = logging.getLogger(__name__)

#: How many configs of the front the detailed charts show (the default config comes on top).
TOP_CONFIGS = 5


@dataclass(frozen=True)
class TrialData:
    """One trial, its rows in the tuner's tables, and what its numbers say."""

    trial: FrozenTrial
    record: TrialRecord | None
    explanations: tuple[Explanation, ...]

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def complete(self) -> bool:
        return self.trial.state == TrialState.COMPLETE

    @property
    def feasible(self) -> bool:
        return rs.is_feasible(self.trial)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.trial.user_attrs.get(rs.ATTR_METRICS) or {})

    @property
    def point(self) -> LoadPoint | None:
        """The point the trial was judged by, for COMPLETE trials."""
        metrics = self.metrics
        return point_of(metrics) if self.complete and metrics else None

    @property
    def curve(self) -> tuple[LoadPoint, ...]:
        """Every point measured, by concurrency."""
        return tuple(sorted(self.record.points, key=lambda p: p.concurrency)) if self.record else ()

    @property
    def server(self) -> dict[str, Any] | None:
        """The server's window at the judged point's concurrency."""
        point = self.point
        windows = self.trial.user_attrs.get(rs.ATTR_SERVER) or {}
        return windows.get(str(point.concurrency)) if point else None

    @property
    def accuracy(self) -> dict[str, Any] | None:
        return self.trial.user_attrs.get(rs.ATTR_ACCURACY)

    @property
    def is_default(self) -> bool:
        return bool(self.trial.user_attrs.get(rs.ATTR_DEFAULT))

    @property
    def label(self) -> str:
        return f"trial {self.number}" + (" (default)" if self.is_default else "")

    def params_text(self) -> str:
        """The config in short: ``mbs=8 batching=on delay_us=500 instances=2``."""
        short = {"max_batch_size": "mbs", "dynamic_batching": "batching", "max_queue_delay_us": "delay_us",
                 "instance_count": "instances", "cpu_threads": "threads"}
        parts = []
        for key, value in self.trial.params.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            parts.append(f"{short.get(key, key)}={value}")
        return " ".join(parts) or "default"


@dataclass(frozen=True)
class StudyData:
    """A study as the reports show it.

    Attributes:
        name: The study's name.
        directions: ``maximize``/``minimize`` per objective.
        metric_names: The objectives' metric names.
        trials: Every trial, by number.
        front: The feasible Pareto front (numbers), as Optuna judges it.
        recommended: The number of the recommended trial (``tuner.results.recommend``), if any.
        default: The number of the model's default config's trial, if measured.
        bounds: The study's constraints by metric.
        study_file: The study file it last ran with (storage password removed).
        importances: Per objective, Optuna's parameter importances (empty where they cannot be had).
        importance_note: Why there are no importances, where there are none.
    """

    name: str
    directions: list[str]
    metric_names: list[str]
    trials: list[TrialData]
    front: list[int]
    recommended: int | None
    default: int | None
    bounds: dict[str, dict[str, float | None]]
    study_file: dict[str, Any]
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    importance_note: str | None = None

    def trial(self, number: int | None) -> TrialData | None:
        if number is None:
            return None
        return next((t for t in self.trials if t.number == number), None)

    @property
    def complete(self) -> list[TrialData]:
        return [t for t in self.trials if t.complete]

    def front_trials(self) -> list[TrialData]:
        """The front, best first by the first objective."""
        front = [t for t in self.trials if t.number in self.front]
        sign = -1.0 if self.directions and self.directions[0] == "maximize" else 1.0
        return sorted(front, key=lambda t: (sign * t.trial.values[0], t.number))

    def top(self, count: int = TOP_CONFIGS) -> list[TrialData]:
        """The front's best ``count`` (the recommendation first) and the default config after them."""
        chosen = self.front_trials()[:count]
        default = self.trial(self.default)
        if default is not None and default not in chosen:
            chosen.append(default)
        return chosen


def gather(study: optuna.Study, store: Store, importances: bool = True) -> StudyData:
    """Everything the reports show about ``study``."""
    trials = study.get_trials(deepcopy=False)
    records = store.records(t._trial_id for t in trials)  # the tuner's rows are keyed by trial_id
    bounds = bounds_of(study)
    data = [
        TrialData(t, records.get(t._trial_id), tuple(explain_trial(t, records.get(t._trial_id), bounds)))
        for t in trials
    ]
    front = report.front_of(trials, study.directions)
    best = rs.recommend(study)  # as `tuner optimize` recommends: re-measured configs by their median
    default = rs.default_trial(study)
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    found, note = _importances(study, names) if importances else ({}, None)
    study_file = study.user_attrs.get(rs.ATTR_STUDY_FILE)
    return StudyData(
        name=study.study_name,
        directions=[d.name.lower() for d in study.directions],
        metric_names=list(names),
        trials=data,
        front=[t.number for t in front],
        recommended=best.number if best else None,
        default=default.number if default else None,
        bounds=bounds,
        study_file=study_file if isinstance(study_file, dict) else {},
        importances=found,
        importance_note=note,
    )


def _importances(study: optuna.Study, names: list[str]) -> tuple[dict[str, dict[str, float]], str | None]:
    """Optuna's importances of each param for each objective, or why there are none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"parameter importances need 2 or more complete trials; the study has {len(complete)}"
    found: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found[name] = dict(optuna.importance.get_param_importances(
                    study, target=lambda t, i=index: t.values[i], normalize=True,
                ))
        except (ValueError, RuntimeError) as exc:  # e.g. no param takes two values in every trial
            logger.info("no importances for %s: %s", name, exc)
            return {}, f"no parameter importances: {exc}"
    if not any(found.values()):
        return {}, "no parameter importances: no param varies across every complete trial"
    return found, None
