"""The grid sampler: every distinct config of the space once, like a brute-force search.

Optuna's GridSampler takes the product of every knob's values, so with the queue delay asked
only under dynamic batching it proposes "batching off" once per delay; this one enumerates the
distinct configs (``SearchSpace.combinations``) and proposes each exactly once, in an order
shuffled by the seed. Configs the study already has (the enqueued default, or trials of an
earlier run of the same study) are not proposed again.
"""

from __future__ import annotations

import random
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial

from tuner.samplers._planned import PlannedSampler
from tuner.samplers._space import Space


class ConfigGridSampler(PlannedSampler):
    """Proposes every config of the space once.

    Args:
        space: The study's search space.
        seed: Shuffles the order of the configs; None keeps the space's own order.

    Raises:
        ConfigError: the space has a log range or too many configs to enumerate.
    """

    exhausted_reason = "grid search done: every config of the space was measured"

    def __init__(self, space: Space, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.combinations = space.combinations()
        if seed is not None:
            random.Random(seed).shuffle(self.combinations)
        self._keys = [space.key_of(params) for params in self.combinations]

    def plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        visited, unmade = self.visited(study, exclude=trial.number), self.unmade(study)
        for key, params in zip(self._keys, self.combinations):
            if key not in visited and not unmade(params):
                return params
        return None

    def has_proposal(self, study: Study) -> bool:
        visited, unmade = self.visited(study), self.unmade(study)
        return any(key not in visited and not unmade(params) for key, params in zip(self._keys, self.combinations))
