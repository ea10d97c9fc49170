"""What a study's stored trials say while it runs: which count against the budget, and which a
killed tuner left running. Which configs to measure again is tuner.study._remeasure's."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.storage import (
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_REMEASURE_OF,
    ATTR_SPEC_KEY,
    ATTR_WARM_START,
)

logger = logging.getLogger(__name__)


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Marks trials left RUNNING by a killed tuner as FAIL and proposes their configs again.

    A trial killed before its config was whole (its spec key is stored once every knob is) was
    never measured: it is failed and not proposed again, so the sampler proposes afresh."""
    recovered = []
    storage = study._storage  # Optuna offers no public way to fail a stale trial
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, "the tuner stopped while this trial ran")
        storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if ATTR_SPEC_KEY in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs=carry_attrs(trial), skip_if_exists=False)
            recovered.append(trial.number)
    if recovered:
        logger.warning("trials %s were running when the tuner stopped; they run again", recovered)
    return recovered


def carry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    return {k: trial.user_attrs[k] for k in (ATTR_DEFAULT, ATTR_WARM_START, ATTR_REMEASURE_OF) if k in trial.user_attrs}


def counted_trials(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, less those the tuner interrupted
    and the re-measurements (as ``StoredStudy.counted``, without reading every trial's attributes)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    return sum(1 for t in trials if not t.user_attrs.get(ATTR_INTERRUPTED) and ATTR_REMEASURE_OF not in t.user_attrs)


def interrupted_trials(trials: Sequence[FrozenTrial]) -> int:
    """Trials the tuner stopped (Ctrl-C, SIGTERM, a killed driver): stored FAIL, though no config failed."""
    return sum(1 for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(ATTR_INTERRUPTED))
