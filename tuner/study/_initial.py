"""The configs a study measures first, queued one at a time as the search asks for them.

    queue_initial(study, space, cfg.search.sampler, cfg.search.warm_start is not False, seeds)   # before ask()

The first trials are the default config, then the warm start (tuner.samplers.initial_params): the
rules of thumb, or the seeds of a transfer. Each is queued only when the search asks for a trial,
so what the earlier ones showed can change the rest: an accelerator that failed to load the model
and ran no config is left out of the rest, and the rules of thumb become those of a space without
it (the other changes, alone and together) rather than more configs that fail as that one did.
The warm start ends with the first trial it did not queue: the sampler's first proposal. Where a
trial waits already (one queued and not yet asked, or an interrupted one queued again), nothing
is queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.samplers import Space, initial_params, trial_params, unusable_accelerators
from tuner.storage import ATTR_DEFAULT, ATTR_WARM_START


def queue_initial(
    study: optuna.Study,
    space: Space,
    sampler: str,
    warm_start: bool = True,
    seeds: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Queues the next config to measure first, where no trial waits and one is left; returns it.

    Args:
        study: The study, whose trials so far decide what comes next.
        space: The study's search space.
        sampler: The study's sampler (``search.sampler``): only some take a warm start.
        warm_start: False measures the default config only (``search.warm_start: false``).
        seeds: The configs of earlier studies that take the rules of thumb's place (a transfer).
    """
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    if any(ATTR_DEFAULT not in t.user_attrs and ATTR_WARM_START not in t.user_attrs for t in trials):
        return None
    first = initial_params(sampler, space, warm_start, seeds=seeds, unusable=unusable_accelerators(trials))
    queued = {space.key_of(given) for t in trials if (given := trial_params(t))}
    params: dict[str, Any] | None = next((p for p in first if space.key_of(p) not in queued), None)
    if params is not None:
        attr = ATTR_DEFAULT if space.key_of(params) == space.key_of(first[0]) else ATTR_WARM_START
        study.enqueue_trial(params, user_attrs={attr: True})
    return params
