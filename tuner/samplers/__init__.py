"""Sampler names -> samplers: Optuna's own (tpe, nsga2, gp, random) and the tuner's (bo, grid, quick).

    sampler = make_sampler("bo", seed=7, space=space)
    for params in initial_params("bo", space):
        study.enqueue_trial(params)

What the study loop relies on of every sampler is written in ``_contract`` (``Exhaustible``: a
sampler with an ``is_exhausted(study)`` method, such as bo, grid and quick, ends the study when it
has nothing left to propose).
"""

from __future__ import annotations

from tuner.samplers._bo import ConfigBOSampler
from tuner.samplers._contract import DISTINCT, Exhaustible
from tuner.samplers._grid import ConfigGridSampler
from tuner.samplers._pipeline import PipelineSpace
from tuner.samplers._planned import PlannedSampler, accelerators_of, trial_params, unusable_accelerators
from tuner.samplers._quick import QuickSearchSampler
from tuner.samplers._registry import (
    DEFAULT_STARTUP,
    SAMPLERS,
    WARM_STARTED,
    initial_params,
    make_sampler,
    warm_start_params,
)
from tuner.samplers._space import SearchSpace, Space
from tuner.samplers._unmeasured import UnmeasuredFirst

__all__ = [
    "DEFAULT_STARTUP",
    "DISTINCT",
    "SAMPLERS",
    "WARM_STARTED",
    "ConfigBOSampler",
    "ConfigGridSampler",
    "Exhaustible",
    "PipelineSpace",
    "PlannedSampler",
    "QuickSearchSampler",
    "SearchSpace",
    "Space",
    "UnmeasuredFirst",
    "accelerators_of",
    "initial_params",
    "make_sampler",
    "trial_params",
    "unusable_accelerators",
    "warm_start_params",
]
