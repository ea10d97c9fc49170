"""The quick search: hill climbing from the default config, one knob step at a time.

This is how Model Analyzer's quick search works: measure the default config, then its
neighbours (each differs from it in one knob by one step), move to the first neighbour that
is better, and stop when every neighbour of the best config is measured and none beats it.

"Better" is judged as the recommendation is: a feasible trial beats an infeasible one, two
feasible trials compare by the first objective, two infeasible ones by how far they are off
their constraints. A range of many values is climbed on a ladder that doubles its step
(0, 100, 200, 400, ... for a queue delay), so that one step is worth measuring.
"""

from __future__ import annotations

import random
from typing import Any

from optuna.distributions import CategoricalDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tuner.samplers._planned import PlannedSampler, trial_params
from tuner.samplers._space import Space

#: A range with more values than this is climbed on a doubling ladder.
_LADDER_MAX = 8


class QuickSearchSampler(PlannedSampler):
    """Proposes the default config, then untried neighbours of the best config so far.

    Args:
        space: The study's search space.
        seed: Shuffles the order in which neighbours are tried; None keeps the knobs' order.
    """

    exhausted_reason = "quick search converged: no neighbour of the best config improves on it"

    def __init__(self, space: Space, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self.ladders = {knob: ladder(space, knob) for knob in space.distributions}

    def plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        candidates = self._candidates(study, exclude=trial.number)
        return candidates[0] if candidates else None

    def has_proposal(self, study: Study) -> bool:
        return bool(self._candidates(study))

    def incumbent(self, study: Study) -> FrozenTrial | None:
        """The best finished trial so far (see the module's docstring), or None."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return None
        sign = 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0

        def rank(t: FrozenTrial) -> tuple[float, float, int]:
            excess = sum(max(0.0, c) for c in t.constraints.values())
            return (-excess, sign * t.values[0], -t.number)  # ties: the earlier trial stays

        return max(complete, key=rank)

    def neighbours(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Configs one knob step away from ``params``, in a seeded order."""
        found: list[dict[str, Any]] = []
        for knob, values in self.ladders.items():
            if not self.space.asked(knob, params):
                continue
            for value in _steps(values, params.get(knob), self.space.distributions[knob]):
                moved = {**params, knob: value}
                # a knob asked only under another (the queue delay under batching) starts at its lowest rung
                for other, rungs in self.ladders.items():
                    if not self.space.asked(other, moved):
                        moved.pop(other, None)
                    elif other not in moved:
                        moved[other] = rungs[0]
                found.append(moved)
        if self.seed is not None:
            random.Random(f"{self.seed}:{sorted(params.items())}").shuffle(found)
        return found

    def _candidates(self, study: Study, exclude: int | None = None) -> list[dict[str, Any]]:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != exclude]
        if not trials:
            return [self.space.default_params()]
        best = self.incumbent(study)
        if best is None:
            return []  # the first configs are still running: wait for them
        visited, unmade = self.visited(study, exclude=exclude), self.unmade(study)
        return [p for p in self.neighbours(trial_params(best)) if self.space.key_of(p) not in visited and not unmade(p)]


def ladder(space: Space, knob: str) -> list[Any]:
    """The values a knob is climbed on: all of them, or a doubling ladder for a long range."""
    values = space.values(knob)
    if isinstance(space.distributions[knob], CategoricalDistribution) or len(values) <= _LADDER_MAX:
        return values
    low, high, step = values[0], values[-1], values[1] - values[0]
    rungs = {low, high}
    size = step
    while low + size < high:
        rungs.add(low + size)
        size *= 2
    return sorted(rungs)


def _steps(values: list[Any], current: Any, distribution: Any) -> list[Any]:
    """The values one step from ``current``: every other choice for names and flags, the
    next lower and higher rung for numbers."""
    if not values or current is None:
        return []
    if isinstance(distribution, CategoricalDistribution) and not all(_is_number(v) for v in values):
        return [v for v in values if v != current]
    ordered = sorted(values)
    index = min(range(len(ordered)), key=lambda i: abs(ordered[i] - current))
    return [ordered[i] for i in (index - 1, index + 1) if 0 <= i < len(ordered) and ordered[i] != current]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
