"""Telling Optuna of a trial its screen stopped (tuner.trial.Screen): stored PRUNED, with what the screen saw.

A pruned trial keeps the reason (``ATTR_PRUNED_REASON``), the screen's point as its metrics and its
one measured point, and the constraints of that point; with one objective, its value there is
reported as Optuna's intermediate value (what Optuna's samplers learn from a PRUNED trial). The bo
sampler takes the first objective's metric among the stored ones as its value, whatever the number
of objectives. A later trial of the same config is told PRUNED alike, from the first, without
measuring it again.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config import StudyConfig
from tuner.storage import (
    ATTR_ACCURACY,
    ATTR_METRICS,
    ATTR_PRUNED_REASON,
    ATTR_REUSED_FROM,
    ATTR_SERVER,
    Store,
)
from tuner.study._results import constraint_values, trial_metrics
from tuner.trial import TrialOutcome, TrialSpec

logger = logging.getLogger(__name__)


def tell_pruned(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome, cfg: StudyConfig) -> None:
    """Tells a trial whose outcome its screen stopped (``outcome.pruned``) as PRUNED."""
    point = outcome.points[0]
    metrics = trial_metrics(point, outcome.accuracy)
    trial.set_user_attr(ATTR_PRUNED_REASON, outcome.pruned)
    trial.set_user_attr(ATTR_METRICS, point.as_dict() | {"accuracy_drop": metrics["accuracy_drop"]})
    if outcome.accuracy is not None:
        trial.set_user_attr(ATTR_ACCURACY, outcome.accuracy)
    if outcome.server:
        trial.set_user_attr(ATTR_SERVER, outcome.server)
    for name, value in constraint_values(metrics, cfg).items():
        trial.set_constraint(name, value)
    if len(cfg.objectives) == 1:  # Optuna keeps intermediate values of one objective only
        trial.report(metrics[cfg.objectives[0].metric], step=point.concurrency)
    study.tell(trial, state=TrialState.PRUNED)
    logger.info("trial %d stopped after its screen: %s", trial.number, outcome.pruned)


def tell_pruned_again(
    study: optuna.Study, store: Store, trial: optuna.Trial, spec: TrialSpec, source: FrozenTrial
) -> None:
    """Tells a trial of a config already pruned (``source``) as PRUNED alike, marked ``reused_from``."""
    record = store.records([source._trial_id]).get(source._trial_id)
    if record is not None:
        outcome = TrialOutcome(
            spec=spec, config_pbtxt=record.config_pbtxt, points=record.points, step_configs=record.step_configs
        )
        store.save_outcome(study.study_name, trial._trial_id, trial.number, outcome)
    trial.set_user_attr(ATTR_REUSED_FROM, source.number)
    for attr in (ATTR_PRUNED_REASON, ATTR_METRICS, ATTR_ACCURACY, ATTR_SERVER):
        if attr in source.user_attrs:
            trial.set_user_attr(attr, source.user_attrs[attr])
    for name, value in source.constraints.items():
        trial.set_constraint(name, value)
    for step, value in source.intermediate_values.items():
        trial.report(value, step)
    study.tell(trial, state=TrialState.PRUNED)
