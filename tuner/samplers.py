"""Sampler names -> Optuna samplers.

Constraints reach the samplers through ``Trial.set_constraint`` (Optuna 5), so every sampler
that can use them does, and ``study.best_trials`` is the feasible Pareto front whatever the
sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from tuner.errors import ConfigError
from tuner.search_space import SearchSpace


def _tpe(seed: int | None, space: SearchSpace) -> optuna.samplers.BaseSampler:
    del space
    # constant_liar keeps trials in flight from being proposed twice when workers run in parallel
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _nsga2(seed: int | None, space: SearchSpace) -> optuna.samplers.BaseSampler:
    del space
    return optuna.samplers.NSGAIISampler(seed=seed)


def _random(seed: int | None, space: SearchSpace) -> optuna.samplers.BaseSampler:
    del space
    return optuna.samplers.RandomSampler(seed=seed)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for an ask-and-tell loop.

    Optuna's own ``after_trial`` calls ``study.stop()`` once the grid is used up, which works only
    inside ``study.optimize``; the study loop asks ``is_exhausted`` before each trial instead.
    """

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001 - Optuna's signature
        return None


def _grid(seed: int | None, space: SearchSpace) -> optuna.samplers.BaseSampler:
    return AskTellGridSampler(space.grid(), seed=seed)


SAMPLERS: dict[str, Callable[[int | None, SearchSpace], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": _random,
    "grid": _grid,
}


def make_sampler(name: str, seed: int | None, space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``.

    Raises:
        ConfigError: the name is unknown, or the space does not suit the sampler.
    """
    factory = SAMPLERS.get(name)
    if factory is None:
        raise ConfigError(f"search.sampler: unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return factory(seed, space)
