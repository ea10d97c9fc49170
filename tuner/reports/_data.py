"""A stored study gathered for reports: every trial, every config with its loads, the front, the marks.

    data = gather(study, store)
    data.top()          # the configs worth a closer look: the recommendation, the front, the default

The unit is the config (tuner.study): the front, the recommendation and the detailed charts are
over configs judged by the median of their loads, and each is drawn from its representative load
(the one nearest the median), never from a re-measurement chosen by chance. The HTML report
(tuner.reports._html), the PNG charts (tuner.reports._png) and `tuner compare` all draw from one
``StudyData``; nothing here draws.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.reports._explain import Explanation, explain_trial
from tuner.storage import ConstraintMiss, Store, StoredStudy, StoredTrial, StudyInfo, TrialRecord, read_study
from tuner.study import ConfigResult, Recommendation, config_results, default_result, pareto_front, recommend
from tuner.trial import LoadPoint

logger = logging.getLogger(__name__)

#: How many configs of the front the detailed charts show (the default config comes on top).
TOP_CONFIGS = 5
#: The GPU readings of a LoadPoint: all zero on a CPU study.
GPU_FIELDS = ("gpu_util_pct", "gpu_util_max_pct", "gpu_memory_mb", "gpu_power_w")

_SHORT = {
    "max_batch_size": "mbs",
    "dynamic_batching": "batching",
    "max_queue_delay_us": "delay_us",
    "instance_count": "instances",
    "cpu_threads": "threads",
}


def params_text(params: dict[str, Any]) -> str:
    """A config in short: ``mbs=8 batching=on delay_us=500 instances=2``; ``(no params)`` where a trial has none
    (a space whose every knob is fixed, or a trial stopped before the sampler proposed its config)."""
    parts = []
    for key, value in params.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{_SHORT.get(key, key)}={value}")
    return " ".join(parts) or "(no params)"


@dataclass(frozen=True)
class TrialData:
    """One trial (one load), and what its numbers say."""

    stored: StoredTrial
    explanations: tuple[Explanation, ...]

    @property
    def number(self) -> int:
        return self.stored.number

    @property
    def state(self) -> str:
        return self.stored.state.name

    @property
    def complete(self) -> bool:
        return self.stored.complete

    @property
    def feasible(self) -> bool:
        return self.stored.feasible

    @property
    def metrics(self) -> dict[str, Any]:
        return self.stored.metrics

    @property
    def point(self) -> LoadPoint | None:
        """The point the trial was judged by, for COMPLETE trials."""
        return self.stored.point

    @property
    def curve(self) -> tuple[LoadPoint, ...]:
        """Every point measured, by concurrency."""
        return self.stored.curve

    @property
    def server(self) -> dict[str, Any] | None:
        """The server's window at the judged point's concurrency."""
        return self.stored.server_window

    @property
    def record(self) -> TrialRecord | None:
        return self.stored.record

    @property
    def accuracy(self) -> dict[str, Any] | None:
        return self.stored.accuracy

    @property
    def is_default(self) -> bool:
        return self.stored.is_default

    @property
    def label(self) -> str:
        return f"trial {self.number}" + (" (default)" if self.is_default else "")

    def params_text(self) -> str:
        """The config in short: ``mbs=8 batching=on delay_us=500 instances=2``."""
        return params_text(self.stored.params)


@dataclass(frozen=True)
class ConfigData:
    """One config: its result over every load, and the load that stands for it in charts and readings.

    Attributes:
        result: The config's loads and medians (tuner.study).
        trial: Its representative load (the one nearest the median).
        failed: The constraints its medians break, and by how much.
    """

    result: ConfigResult
    trial: TrialData
    failed: tuple[ConstraintMiss, ...] = ()

    @property
    def number(self) -> int:
        return self.trial.number

    @property
    def loads(self) -> int:
        return len(self.result.loads)

    @property
    def feasible(self) -> bool:
        return self.result.feasible

    @property
    def is_default(self) -> bool:
        return self.result.is_default

    @property
    def label(self) -> str:
        return self.trial.label

    @property
    def point(self) -> LoadPoint | None:
        return self.trial.point

    @property
    def curve(self) -> tuple[LoadPoint, ...]:
        return self.trial.curve

    @property
    def server(self) -> dict[str, Any] | None:
        return self.trial.server

    @property
    def explanations(self) -> tuple[Explanation, ...]:
        return self.trial.explanations

    def metric(self, name: str) -> float | None:
        """The median of a metric over the loads."""
        return self.result.metric(name)

    def params_text(self) -> str:
        return self.trial.params_text()

    def loads_text(self) -> str:
        """``3 loads, 80.2-90.1, spread 12%`` (the interval of the first objective), or ``1 load``."""
        low, high = self.result.interval
        if self.loads == 1:
            return "1 load" + (f", {low:.4g}-{high:.4g}" if high > low else "")
        return f"{self.loads} loads, {low:.4g}-{high:.4g}, spread {self.result.spread_pct:.0f}%"

    def failed_text(self) -> str:
        """``infeasible: latency_p99_ms 61.2 > max 50 (+22%)``, or empty where every constraint held."""
        if self.feasible:
            return ""
        return "infeasible: " + ("; ".join(m.text() for m in self.failed) or "a constraint failed")


@dataclass(frozen=True)
class StudyData:
    """A study as the reports show it.

    Attributes:
        name: The study's name.
        directions: ``maximize``/``minimize`` per objective.
        metric_names: The objectives' metric names.
        trials: Every trial, by number.
        configs: Every measured config, in the order first measured.
        front: The feasible Pareto front of configs (their representative trials' numbers).
        recommendation: The config to deploy (``tuner.study.recommend``), if any is feasible.
        recommended: The number of its representative trial.
        default: The number of the model's default config's representative trial, if measured.
        bounds: The study's constraints by metric.
        study_file: The study file it last ran with (storage password removed).
        importances: Per objective, Optuna's parameter importances (empty where they cannot be had).
        importance_note: Why there are no importances, where there are none.
        info: What the study stores about itself (its verifications among it).
    """

    name: str
    directions: list[str]
    metric_names: list[str]
    trials: list[TrialData]
    configs: list[ConfigData]
    front: list[int]
    recommendation: Recommendation | None
    recommended: int | None
    default: int | None
    bounds: dict[str, dict[str, float | None]]
    study_file: dict[str, Any]
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    importance_note: str | None = None
    info: StudyInfo | None = None

    def trial(self, number: int | None) -> TrialData | None:
        if number is None:
            return None
        return next((t for t in self.trials if t.number == number), None)

    def config(self, number: int | None) -> ConfigData | None:
        """The config a trial measured (any of its loads' numbers)."""
        if number is None:
            return None
        return next((c for c in self.configs if any(t.number == number for t in c.result.loads)), None)

    @property
    def complete(self) -> list[TrialData]:
        return [t for t in self.trials if t.complete]

    def front_configs(self) -> list[ConfigData]:
        """The front, best first by the first objective's median."""
        front = [c for c in self.configs if c.number in self.front]
        sign = -1.0 if self.directions and self.directions[0] == "maximize" else 1.0
        return sorted(front, key=lambda c: (sign * c.result.values[0], c.number))

    def top(self, count: int = TOP_CONFIGS) -> list[ConfigData]:
        """The recommendation first, the rest of the front's best ``count``, and the default config after them."""
        recommended = self.config(self.recommended)
        chosen = [recommended] if recommended is not None else []
        chosen += [c for c in self.front_configs() if c is not recommended][: max(0, count - len(chosen))]
        default = self.config(self.default)
        if default is not None and default not in chosen:
            chosen.append(default)
        return chosen

    def gpu_measured(self) -> bool:
        """Whether any load read a GPU (a CPU study's GPU readings are all zero)."""
        return any(getattr(p, name) for t in self.complete for p in (t.point, *t.curve) if p for name in GPU_FIELDS)


def gather(study: optuna.Study, store: Store, importances: bool = True) -> StudyData:
    """Everything the reports show about ``study``."""
    stored = read_study(study, store)
    found, note = _importances(study, list(stored.info.metric_names)) if importances else ({}, None)
    return study_data(stored, found, note)


def study_data(
    stored: StoredStudy, importances: dict[str, dict[str, float]] | None = None, importance_note: str | None = None
) -> StudyData:
    """A stored study as the reports show it (``importances``: Optuna's, where computed)."""
    info = stored.info
    bounds = info.bounds
    trials = [TrialData(t, tuple(explain_trial(t, bounds, info.has_variants))) for t in stored.trials]
    by_number = {t.number: t for t in trials}
    results = config_results(stored.trials, info)
    configs = [ConfigData(r, by_number[r.representative.number], tuple(r.failed_constraints(bounds))) for r in results]
    rec = recommend(results, info)
    default = default_result(results)
    return StudyData(
        name=info.name,
        directions=list(info.directions),
        metric_names=list(info.metric_names),
        trials=trials,
        configs=configs,
        front=[r.number for r in pareto_front(results, info.directions)],
        recommendation=rec,
        recommended=rec.number if rec else None,
        default=default.number if default else None,
        bounds=bounds,
        study_file=info.study_file,
        importances=importances or {},
        importance_note=importance_note,
        info=info,
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
                found[name] = dict(
                    optuna.importance.get_param_importances(
                        study,
                        target=_objective(index),
                        normalize=True,
                    )
                )
        except (ValueError, RuntimeError) as exc:  # e.g. no param takes two values in every trial
            logger.info("no importances for %s: %s", name, exc)
            return {}, f"no parameter importances: {exc}"
    if not any(found.values()):
        return {}, "no parameter importances: no param varies across every complete trial"
    return found, None


def _objective(index: int) -> Callable[[FrozenTrial], float]:
    """The value of one objective of a trial, as Optuna's ``target`` takes it."""
    return lambda trial: trial.values[index]
