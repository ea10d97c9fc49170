"""What a study's stored trials say: which count against the budget, which a killed tuner left
running, and which configs to measure again before recommending one."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.results import (
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_REMEASURE_OF,
    ATTR_REUSED_FROM,
    ATTR_SPEC_KEY,
    is_feasible,
)

logger = logging.getLogger(__name__)


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Marks trials left RUNNING by a killed tuner as FAIL and proposes their configs again."""
    recovered = []
    storage = study._storage  # noqa: SLF001 - Optuna offers no public way to fail a stale trial
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON, "the tuner stopped while this trial ran")  # noqa: SLF001
        storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)  # noqa: SLF001
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        study.enqueue_trial(trial.params, user_attrs=carry_attrs(trial), skip_if_exists=False)
        recovered.append(trial.number)
    if recovered:
        logger.info("trials %s were running when the tuner stopped; they run again", recovered)
    return recovered


def carry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    return {k: trial.user_attrs[k] for k in (ATTR_DEFAULT, ATTR_REMEASURE_OF) if k in trial.user_attrs}


def counted_trials(study: optuna.Study) -> int:
    """Trials that count against the budget: finished ones, less those the tuner interrupted
    and the re-measurements of the best configs."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    return sum(1 for t in trials if not t.user_attrs.get(ATTR_INTERRUPTED) and ATTR_REMEASURE_OF not in t.user_attrs)


def remeasure_plan(study: optuna.Study, top: int, repeats: int) -> list[FrozenTrial]:
    """The best ``top`` feasible configs by the first objective, once per fresh measurement each
    still lacks (``repeats`` in all besides the original)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done: dict[int, int] = {}
    for t in trials:
        if ATTR_REMEASURE_OF in t.user_attrs:
            done[int(t.user_attrs[ATTR_REMEASURE_OF])] = done.get(int(t.user_attrs[ATTR_REMEASURE_OF]), 0) + 1
    originals = [
        t for t in trials
        if is_feasible(t) and ATTR_REMEASURE_OF not in t.user_attrs and ATTR_REUSED_FROM not in t.user_attrs
    ]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    originals.sort(key=lambda t: t.values[0], reverse=maximize)
    best, seen = [], set()
    for t in originals:
        if t.user_attrs.get(ATTR_SPEC_KEY) not in seen:
            seen.add(t.user_attrs.get(ATTR_SPEC_KEY))
            best.append(t)
    return [t for t in best[:top] for _ in range(max(0, repeats - done.get(t.number, 0)))]
