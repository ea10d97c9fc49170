"""The search space of an ensemble, or of a python model with the models it calls (BLS): each
model's knobs, searched together.

Each model has a space of its own (``SearchSpace``, from ``search.space.for_model(name)``); its
knobs become trial parameters named ``<model>.<knob>`` (``detector.instance_count``), and a config
is every model's knobs at once: a TrialSpec whose ``steps`` hold each composing model's spec (and,
for a BLS model, whose own knobs are the calling model's). ``PipelineSpace`` answers the samplers
as a ``SearchSpace`` does, so every sampler searches a pipeline as it searches one model.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from tuner.errors import ConfigError
from tuner.samplers._space import GRID_LIMIT, SearchSpace, distribution_values
from tuner.trial import TrialSpec


class PipelineSpace:
    """The composing models' spaces as one, under ``<model>.<knob>`` names.

    Args:
        parts: Each model's space, by model name, in the order the pipeline runs them.
        max_batch_size: An ensemble's own ``max_batch_size``; a config lowers it to its steps'
            lowest, as Triton refuses an ensemble whose batches a step could not take.
        caller: The model of ``parts`` that calls the others through BLS: its knobs are the
            spec's own, the others' its ``steps``. None for an ensemble (its own knobs are its
            scheduler's).
    """

    def __init__(self, parts: Mapping[str, SearchSpace], max_batch_size: int, caller: str | None = None) -> None:
        if len(parts) < (2 if caller else 1) or (caller is not None and caller not in parts):
            raise ValueError("a pipeline runs at least one composing model")
        self.parts = dict(parts)
        self.max_batch_size = max_batch_size
        self.caller = caller
        first = next(iter(self.parts.values()))
        self.worker_cores = first.worker_cores
        self.kind = first.kind
        self.distributions: dict[str, BaseDistribution] = {
            f"{name}.{knob}": d for name, part in self.parts.items() for knob, d in part.distributions.items()
        }
        self.fixed: dict[str, Any] = {
            f"{name}.{knob}": v for name, part in self.parts.items() for knob, v in part.fixed.items()
        }

    def _split(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Params by model: ``<model>.<knob>`` to that model's, and a bare knob to every model's."""
        split: dict[str, dict[str, Any]] = {name: {} for name in self.parts}
        for key, value in params.items():
            name, dot, knob = key.rpartition(".")
            if not dot:
                for values in split.values():
                    values.setdefault(key, value)
            elif name in split:
                split[name][knob] = value
        return split

    @staticmethod
    def _join(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{name}.{knob}": value for knob, value in params.items()}

    def suggest(self, trial: optuna.Trial) -> TrialSpec:
        """Asks the trial for every searched knob of every model and returns the resulting spec."""
        params: dict[str, Any] = {}
        for name, part in self.parts.items():
            params |= self._join(name, part.ask(trial, prefix=f"{name}."))
        return self.to_spec(params)

    def asked(self, knob: str, params: Mapping[str, Any]) -> bool:
        name, _, own = knob.rpartition(".")
        part = self.parts.get(name)
        return part is None or part.asked(own, self._split(params)[name])

    def delay_waited_out(self, params: Mapping[str, Any]) -> bool:
        """Whether a composing model's batches wait out their whole queue delay (``SearchSpace``): every
        request of the pipeline is one request to each of its models, in flight as long."""
        split = self._split(params)
        return any(part.delay_waited_out(split[name]) for name, part in self.parts.items())

    def unasked_value(self, knob: str, params: Mapping[str, Any]) -> Any:
        name, _, own = knob.rpartition(".")
        part = self.parts.get(name)
        return None if part is None else part.unasked_value(own, self._split(params)[name])

    def to_spec(self, values: Mapping[str, Any]) -> TrialSpec:
        """The pipeline's spec from trial params: each composing model's spec in ``steps``."""
        split = self._split(values)
        specs = {name: part.to_spec(split[name]) for name, part in self.parts.items()}
        if self.caller is not None:
            own = specs.pop(self.caller)
            return dataclasses.replace(own, steps=tuple(specs.items()))
        steps = tuple(specs.items())
        batch = min([self.max_batch_size, *(spec.max_batch_size for _, spec in steps)])
        return TrialSpec(
            max_batch_size=batch, dynamic_batching=False, max_queue_delay_us=0, instance_count=1, steps=steps
        )

    def default_params(self) -> dict[str, Any]:
        """Every model's default config (its own config's knobs, see ``SearchSpace.default_params``)."""
        return self.params_near({})

    def params_near(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params for every searched knob: ``wanted`` where given (a bare knob for every
        model, ``<model>.<knob>`` for one), else each model's default, moved into its space."""
        split = self._split(wanted)
        params: dict[str, Any] = {}
        for name, part in self.parts.items():
            params |= self._join(name, part.params_near(split[name]))
        return params

    def params_from(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params for a stored config (``StoredTrial.spec``) of another study of the ensemble:
        each model's knobs moved into its space (see ``SearchSpace.params_from``)."""
        steps = dict(config.get("steps") or [])
        if self.caller is not None:
            steps[self.caller] = config
        params: dict[str, Any] = {}
        for name, part in self.parts.items():
            params |= self._join(name, part.params_from(steps.get(name, {})))
        return params

    def values(self, knob: str) -> list[Any]:
        return distribution_values(self.distributions[knob])

    def key_of(self, params: Mapping[str, Any]) -> str:
        return self.to_spec(params).key()

    def combinations(self) -> list[dict[str, Any]]:
        """Every distinct config: each model's configs, in every combination.

        Raises:
            ConfigError: a knob is a log range, or there are too many configs to enumerate.
        """
        each = {name: part.combinations() for name, part in self.parts.items()}
        self._check_size(math.prod(len(c) for c in each.values()))
        return [
            {k: v for name, params in zip(each, combo) for k, v in self._join(name, params).items()}
            for combo in itertools.product(*each.values())
        ]

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every searched knob (see ``SearchSpace.grid``).

        Raises:
            ConfigError: a knob is a log range, or the grid is too large to enumerate.
        """
        grid: dict[str, list[Any]] = {}
        for name, part in self.parts.items():
            grid |= self._join(name, part.grid())
        self._check_size(math.prod(len(v) for v in grid.values()))
        return grid

    @staticmethod
    def _check_size(size: int) -> None:
        if size > GRID_LIMIT:
            raise ConfigError(
                f"search.space: the composing models' knobs make {size} configs together; the grid sampler takes "
                f"at most {GRID_LIMIT} (bo searches with tpe beyond that): give fewer values "
                "(search.space.models.<name>) or use tpe"
            )
