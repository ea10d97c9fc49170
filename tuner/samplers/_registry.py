"""Sampler names -> samplers, and the configs a study starts with.

Constraints reach Optuna's samplers through ``Trial.set_constraint`` (Optuna 5), so every
sampler that can use them does, and ``study.best_trials`` is the feasible Pareto front
whatever the sampler.

The defaults here (``bo``, started with the default config and three configs that each make two
of the changes the rules of thumb name, the model used from the fifth trial on) were chosen by
leave-one-landscape-out over seven recorded landscapes, each judged only on landscapes that did
not choose it (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import optuna

from tuner.errors import ConfigError
from tuner.samplers._bo import ConfigBOSampler
from tuner.samplers._grid import ConfigGridSampler
from tuner.samplers._planned import accelerators_of, is_accelerator
from tuner.samplers._quick import QuickSearchSampler
from tuner.samplers._space import Space
from tuner.samplers._unmeasured import UnmeasuredFirst
from tuner.trial import InstanceKind

logger = logging.getLogger(__name__)

#: Random (or warm-start) trials before a model-based sampler takes over, by sampler.
DEFAULT_STARTUP: dict[str, int] = {"bo": 4, "tpe": 8, "gp": 8, "nsga2": 10}
#: Samplers that the warm-start configs are given to (the grid and the quick search have their own order).
WARM_STARTED = ("bo", "tpe", "gp", "nsga2")


def _startup(name: str, given: int | None) -> int:
    return given if given is not None else DEFAULT_STARTUP[name]


def _bo(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    try:
        return ConfigBOSampler(space, seed, _startup("bo", startup))
    except ConfigError as exc:  # a space too large to enumerate, or a log range
        logger.info("search.sampler bo: %s; searching with tpe instead", exc)
        return _tpe(seed, space, startup)


def _tpe(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    # multivariate: the knobs interact (instances x threads x provider); constant_liar keeps
    # trials in flight from being proposed twice when workers run in parallel
    tpe = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=_startup("tpe", startup), multivariate=True, constant_liar=True
    )
    return UnmeasuredFirst(tpe, space, seed)


def _nsga2(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    del space
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, _startup("nsga2", startup)))


def _gp(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    missing = [name for name in ("torch", "scipy") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"search.sampler: gp needs {' and '.join(missing)} (Optuna's GPSampler); "
            "install them (pip install -e '.[transformer]' brings torch) or pick another sampler"
        )
    gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup("gp", startup), warn_independent_sampling=False)
    return UnmeasuredFirst(gp, space, seed)


def _random(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    del space, startup
    return optuna.samplers.RandomSampler(seed=seed)


def _grid(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    del startup
    return ConfigGridSampler(space, seed=seed)


def _quick(seed: int | None, space: Space, startup: int | None) -> optuna.samplers.BaseSampler:
    del startup
    return QuickSearchSampler(space, seed=seed)


SAMPLERS: dict[str, Callable[[int | None, Space, int | None], optuna.samplers.BaseSampler]] = {
    "bo": _bo,
    "tpe": _tpe,
    "nsga2": _nsga2,
    "gp": _gp,
    "random": _random,
    "grid": _grid,
    "quick": _quick,
}


def make_sampler(
    name: str, seed: int | None, space: Space, n_startup_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``.

    Args:
        name: One of ``SAMPLERS``.
        seed: Makes the sampler's proposals repeatable.
        space: The study's search space.
        n_startup_trials: Finished trials before bo, tpe and gp model the results (nsga2: its
            population); None takes ``DEFAULT_STARTUP``.

    Raises:
        ConfigError: the name is unknown, the space does not suit the sampler, or a package
            the sampler needs is missing.
    """
    factory = SAMPLERS.get(name)
    if factory is None:
        raise ConfigError(f"search.sampler: unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return factory(seed, space, n_startup_trials)


def initial_params(
    name: str,
    space: Space,
    warm_start: bool = True,
    seeds: Sequence[Mapping[str, Any]] | None = None,
    unusable: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The configs a new study measures first: the default config, then (for the samplers in
    ``WARM_STARTED``, with ``warm_start``) the known-good ones of ``warm_start_params``, or
    ``seeds`` where given (trial params of this space: the best configs of earlier studies,
    ``SearchSpace.params_from``) in their place. A config given twice is measured once.

    ``unusable`` names accelerators that could not load the model: the known-good configs are
    those of a space without them, and no config after the default is on one.
    """
    first = [space.default_params()]
    if warm_start and name in WARM_STARTED:
        first += (
            [dict(params) for params in seeds] if seeds is not None else warm_start_params(space, unusable=unusable)
        )
    unique: dict[str, dict[str, Any]] = {}
    for index, params in enumerate(first):
        if index == 0 or not accelerators_of(params) & set(unusable):
            unique.setdefault(space.key_of(params), params)
    return list(unique.values())


#: How the warm start's known-good changes are put together (``warm_start_params``): ``single``, each
#: change on its own; ``pairs``, each two of them together.
WARM_START_DESIGNS = ("single", "pairs")
WARM_START_DESIGN = "pairs"
#: The queue delay of the warm start's batching change. Triton's documented first step in configuring the
#: dynamic batcher is its defaults (``dynamic_batching { }``), which form batches without delaying requests;
#: a delay comes after, traded for throughput within the latency budget (0 since 2026-12-07; 1000 before,
#: which no documented rule gives: docs/benchmarks.md).
WARM_START_QUEUE_DELAY_US = 0


def warm_start_params(space: Space, design: str | None = None, unusable: Collection[str] = ()) -> list[dict[str, Any]]:
    """A few configs that are often good, each moved into the space.

    The changes from the default config that the documented rules of thumb name: one instance
    per core (no batching); Triton's dynamic batcher at a larger batch, with its defaults' queue
    delay (none: ``WARM_START_QUEUE_DELAY_US``); and the fastest accelerator the space offers
    (TensorRT on a GPU, else OpenVINO) with one instance using every core. They are the knobs
    that matter most on CPU and GPU alike (docs/benchmarks.md).

    ``design`` (None takes ``WARM_START_DESIGN``) says how they are put together: ``single``, each
    change on its own; ``pairs``, each two changes together (with the default config, a half of the
    three changes' 2 x 2 x 2 design: every change is on in two configs and off in two, so a model
    of the results learns each one's direction as well as from single changes, and sees every two
    together). A change the space cannot make (no accelerator to choose, or only ``unusable``
    ones: accelerators that could not load the model) drops out; with two changes left, ``pairs``
    is each alone and both together. Configs may come out alike once moved into the space:
    ``initial_params`` measures each once.
    """
    design = design or WARM_START_DESIGN
    if design not in WARM_START_DESIGNS:
        raise ValueError(f"unknown warm-start design {design!r}; valid: {', '.join(WARM_START_DESIGNS)}")
    changes: list[dict[str, Any]] = [
        {"instance_count": space.worker_cores if space.kind is InstanceKind.CPU else 2},
        {"dynamic_batching": True, "max_batch_size": 8, "max_queue_delay_us": WARM_START_QUEUE_DELAY_US},
    ]
    # a pipeline's models each have their own: the change is made to every model that offers it
    offered = {value for knob in space.distributions if is_accelerator(knob) for value in space.values(knob)}
    accelerators = [accelerator for accelerator in offered if accelerator not in unusable]
    for accelerator in ("tensorrt", "openvino"):
        if accelerator in accelerators:
            changes.append({"accelerator": accelerator})
            break
    if design == "pairs" and len(changes) > 2:
        changes = [{**a, **b} for i, a in enumerate(changes) for b in changes[i + 1 :]]
    elif design == "pairs":
        changes = [*changes, {**changes[0], **changes[1]}]
    return [space.params_near(wanted) for wanted in changes]
