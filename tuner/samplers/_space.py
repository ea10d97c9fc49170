"""The study file's search space -> Optuna distributions -> TrialSpec.

Only the knobs given as choices or ranges become trial parameters, under the names the study
file uses; a fixed value is a constant of the study. ``max_queue_delay_us`` is asked only when
dynamic batching is on and the max batch size is above 1, because it means nothing otherwise: a
batch of at most one request is full at once (and it is no dimension at all where batching is
never on). ``cpu_threads``, when the study
leaves it out, gives each instance an equal share of the worker's cores, so that instances x
threads never exceeds them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from tuner import config as cfg
from tuner.errors import ConfigError
from tuner.trial import InstanceKind, TrialSpec, execution_provider

#: Searchable knobs in the order they are asked.
KNOBS: tuple[str, ...] = (
    "max_batch_size",
    "dynamic_batching",
    "max_queue_delay_us",
    "instance_count",
    "cpu_threads",
    "accelerator",
    "precision",
    "performance_hint",
)
GRID_LIMIT = 100_000
#: The install extra (pyproject.toml) whose ONNX Runtime build has each provider; the CPU provider is in both.
PROVIDER_EXTRAS: dict[str, str] = {
    "OpenVINOExecutionProvider": "cpu",
    "CUDAExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu",
}


class Space(Protocol):
    """What the samplers and the study ask of a search space: ``SearchSpace`` (one model) and
    ``PipelineSpace`` (an ensemble's or a BLS model's models together) answer it. Params are a config's trial
    params by knob name; see ``SearchSpace`` for each method's contract."""

    worker_cores: int
    kind: InstanceKind
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]

    def suggest(self, trial: optuna.Trial) -> TrialSpec: ...
    def asked(self, knob: str, params: Mapping[str, Any]) -> bool: ...
    def delay_waited_out(self, params: Mapping[str, Any]) -> bool: ...
    def unasked_value(self, knob: str, params: Mapping[str, Any]) -> Any: ...
    def to_spec(self, values: Mapping[str, Any]) -> TrialSpec: ...
    def default_params(self) -> dict[str, Any]: ...
    def params_near(self, wanted: Mapping[str, Any]) -> dict[str, Any]: ...
    def params_from(self, config: Mapping[str, Any]) -> dict[str, Any]: ...
    def values(self, knob: str) -> list[Any]: ...
    def key_of(self, params: Mapping[str, Any]) -> str: ...
    def combinations(self) -> list[dict[str, Any]]: ...
    def grid(self) -> dict[str, list[Any]]: ...


class SearchSpace:
    """Turns a study's search space into Optuna questions and answers into TrialSpecs.

    Args:
        space: The ``search.space`` section of the study file.
        worker_cores: CPU cores one worker may use.
        kind: Where model instances run on the workers.
        providers: The ONNX Runtime execution providers the workers' runner has
            (tuner.triton.runner_providers), or None where they cannot be seen from here.
        defaults: The model's own values of knobs (a repository model's config:
            tuner.triton.tuned_knobs), which its default config takes instead of Triton's usual start.
        most_in_flight: The most requests the study's load keeps in flight at once (its highest
            concurrency), or None where not known (``delay_waited_out``).

    Raises:
        ConfigError: an accelerator of the space needs GPU workers and the workers have none, or
            needs a provider the runner's ONNX Runtime build lacks (naming the extra that has it).
    """

    def __init__(
        self,
        space: cfg.SpaceSettings,
        worker_cores: int,
        kind: InstanceKind = InstanceKind.CPU,
        providers: Collection[str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        most_in_flight: int | None = None,
    ) -> None:
        self.space = space
        self.worker_cores = max(1, worker_cores)
        self.kind = kind
        self.defaults = dict(defaults or {})
        self.most_in_flight = most_in_flight
        _check_accelerators(space, kind, providers)
        self.distributions: dict[str, BaseDistribution] = {}
        self.fixed: dict[str, Any] = {}
        batching_possible = space.dynamic_batching is True or (
            isinstance(space.dynamic_batching, list) and True in space.dynamic_batching
        )
        for knob in KNOBS:
            value = getattr(space, knob)
            if value is None or (knob == "max_queue_delay_us" and not batching_possible):
                continue
            distribution = _distribution(value)
            if distribution is None:
                self.fixed[knob] = fixed_value(value)
            else:
                self.distributions[knob] = distribution

    def suggest(self, trial: optuna.Trial) -> TrialSpec:
        """Asks the trial for every searched knob and returns the resulting spec."""
        return self.to_spec(self.ask(trial))

    def ask(self, trial: optuna.Trial, prefix: str = "") -> dict[str, Any]:
        """Asks the trial for every searched knob (named ``prefix`` + knob) and returns the params, unprefixed."""
        values: dict[str, Any] = {}
        for knob, distribution in self.distributions.items():
            if not self.asked(knob, values):
                continue
            name = prefix + knob
            if isinstance(distribution, CategoricalDistribution):
                values[knob] = trial.suggest_categorical(name, distribution.choices)
            else:
                assert isinstance(distribution, IntDistribution)
                values[knob] = trial.suggest_int(
                    name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
                )
        return values

    def asked(self, knob: str, params: Mapping[str, Any]) -> bool:
        """Whether a config of these params asks ``knob``: the queue delay only where batching is on
        and a batch may hold more than one request. Triton's batcher delays a request only while its
        batch is short of the largest size; at a max batch size of 1 every batch is full at once, so
        each delay is the same config (its delay measured 0 here)."""
        if knob != "max_queue_delay_us":
            return True
        merged = {**self.fixed, **params}
        return bool(merged.get("dynamic_batching", False)) and int(merged.get("max_batch_size", 1)) > 1

    @functools.cached_property
    def unfilled_batch_sizes(self) -> tuple[int, ...]:
        """The space's max batch sizes above ``most_in_flight``, where a queue delay is searched: a load
        that keeps at most that many requests in flight never fills such a batch (``delay_waited_out``)."""
        if self.most_in_flight is None or "max_queue_delay_us" not in self.distributions:
            return ()
        knob = "max_batch_size"
        sizes = self.values(knob) if knob in self.distributions else [self.fixed.get(knob, 1)]
        return tuple(int(size) for size in sizes if int(size) > self.most_in_flight)

    @functools.cached_property
    def lowest_delay(self) -> int:
        """The lowest queue delay the space searches (0 where it searches none)."""
        knob = "max_queue_delay_us"
        return int(min(self.values(knob))) if knob in self.distributions else 0

    def delay_waited_out(self, params: Mapping[str, Any]) -> bool:
        """Whether every batch of a config waits out its whole queue delay under the study's load, a
        delay above the space's lowest. Triton's batcher sends a batch before its delay only once the
        batch holds ``max_batch_size`` requests, and a load that keeps at most ``most_in_flight``
        requests in flight never fills a larger one (``unfilled_batch_sizes``): such a delay adds to
        every request's latency and takes throughput, where the lowest delay of the same config does
        neither."""
        knob = "max_queue_delay_us"
        if not self.unfilled_batch_sizes or not self.asked(knob, params):
            return False
        merged = {**self.fixed, **params}
        return (
            int(merged.get("max_batch_size", 1)) in self.unfilled_batch_sizes
            and int(merged.get(knob, self.lowest_delay)) > self.lowest_delay
        )

    def unasked_value(self, knob: str, params: Mapping[str, Any]) -> Any:
        """The value a config of these params runs ``knob`` at where it does not ask it (``asked``): a
        queue delay of 0 where the batcher is on at a max batch size of 1; None where the knob does not
        apply (a queue delay without the batcher)."""
        merged = {**self.fixed, **params}
        return 0 if knob == "max_queue_delay_us" and merged.get("dynamic_batching", False) else None

    def to_spec(self, values: Mapping[str, Any]) -> TrialSpec:
        """A TrialSpec from trial params (fixed values and derived threads filled in)."""
        merged = {**self.fixed, **values}
        instances = int(merged.get("instance_count", 1))
        threads = merged.get("cpu_threads")
        if threads is None:
            threads = max(1, self.worker_cores // instances)
        dynamic = bool(merged.get("dynamic_batching", False))
        accelerator = str(merged.get("accelerator", "none"))
        # OpenVINO runs on the CPU even on a GPU worker.
        kind = InstanceKind.CPU if accelerator == "openvino" else self.kind
        return TrialSpec(
            max_batch_size=int(merged.get("max_batch_size", 1)),
            dynamic_batching=dynamic,
            max_queue_delay_us=int(merged.get("max_queue_delay_us", 0)) if dynamic else 0,
            instance_count=instances,
            cpu_threads=int(threads),
            kind=kind,
            accelerator=accelerator,
            precision=str(merged.get("precision", "fp32")),
            performance_hint=str(merged.get("performance_hint", "")),
        )

    def default_params(self) -> dict[str, Any]:
        """Trial params of the model's default config, moved into the space where needed.

        The default is the model's own config where it has one (``defaults``), else Triton's usual
        start: no dynamic batching, one instance, max_batch_size 4 (the value Triton fills in for a
        batching ONNX model), ONNX Runtime's default provider at FP32; every searched knob gets a
        value, as the grid sampler needs.
        """
        return self.params_near({})

    def params_near(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params for every searched knob: ``wanted`` where given, else the default's,
        each moved to the nearest value the space has."""
        wanted = {
            "max_batch_size": 4,
            "dynamic_batching": False,
            "instance_count": 1,
            "accelerator": "none",
            "precision": "fp32",
            "max_queue_delay_us": 0,
            **self.defaults,
            **wanted,
        }
        params: dict[str, Any] = {}
        for knob, distribution in self.distributions.items():
            if knob in wanted and knob not in ("max_queue_delay_us", "cpu_threads"):
                params[knob] = _nearest(distribution, wanted[knob])
        if "cpu_threads" in self.distributions:
            instances = {**self.fixed, **params}.get("instance_count", 1)
            threads = wanted.get("cpu_threads", max(1, self.worker_cores // instances))
            params["cpu_threads"] = _nearest(self.distributions["cpu_threads"], threads)
        if "max_queue_delay_us" in self.distributions and self.asked("max_queue_delay_us", params):
            params["max_queue_delay_us"] = _nearest(
                self.distributions["max_queue_delay_us"], wanted["max_queue_delay_us"]
            )
        return params

    def params_from(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params for a config measured in another space (``search.warm_start.from``).

        A knob this space searches keeps the config's value where the space has it; else a number
        moves to the nearest value the space has, and a choice the space lacks (an accelerator not
        offered here) falls back to the default config's. A knob the config lacks, or one it had
        but this space fixes, takes this space's value; the queue delay is asked only where
        ``asked`` asks it, as ``suggest`` does.

        Args:
            config: The config's knobs by name (a stored spec: ``StoredTrial.spec``); other keys are ignored.
        """
        wanted: dict[str, Any] = {}
        for knob, value in config.items():
            distribution = self.distributions.get(knob)
            if distribution is None or value is None:
                continue
            lacking = isinstance(distribution, CategoricalDistribution) and value not in distribution.choices
            if lacking and isinstance(value, (bool, str)):
                continue
            wanted[knob] = value
        return self.params_near(wanted)

    def values(self, knob: str) -> list[Any]:
        """Every value a searched knob can take, in the space's order (ranges ascending)."""
        return distribution_values(self.distributions[knob])

    def combinations(self) -> list[dict[str, Any]]:
        """Every distinct config of the space as trial params, once each (the queue delay only
        where it is asked: ``asked``).

        Raises:
            ConfigError: a knob is a log range, or the space is too large to enumerate.
        """
        grid = self.grid()
        delays = grid.pop("max_queue_delay_us", None)
        combos: list[dict[str, Any]] = []
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            if delays is not None and self.asked("max_queue_delay_us", params):
                combos.extend({**params, "max_queue_delay_us": d} for d in delays)
            else:
                combos.append(params)
        return combos

    def key_of(self, params: Mapping[str, Any]) -> str:
        """The TrialSpec key of trial params (see TrialSpec.key)."""
        return self.to_spec(params).key()

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every searched knob, for the grid sampler.

        Raises:
            ConfigError: a knob is a log range, or the grid is too large to enumerate.
        """
        grid: dict[str, list[Any]] = {}
        size = 1
        for knob, distribution in self.distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                grid[knob] = list(distribution.choices)
            elif isinstance(distribution, IntDistribution) and not distribution.log:
                grid[knob] = list(range(distribution.low, distribution.high + 1, distribution.step))
            else:
                raise ConfigError(
                    f"search.space.{knob}: the grid sampler needs choices or a stepped range, not a log range"
                )
            size *= len(grid[knob])
        if size > GRID_LIMIT:
            raise ConfigError(
                f"search.space: the grid has {size} combinations; the grid sampler takes at most {GRID_LIMIT}"
            )
        return grid


def distribution_values(distribution: BaseDistribution) -> list[Any]:
    """Every value of a knob's distribution, in its order (ranges ascending)."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution)
    return list(range(distribution.low, distribution.high + 1, distribution.step))


def _check_accelerators(space: cfg.SpaceSettings, kind: InstanceKind, providers: Collection[str] | None) -> None:
    """Refuses the accelerators that no trial of these workers could run on, before anything starts."""
    accelerators = space.accelerator if isinstance(space.accelerator, list) else [space.accelerator]
    needs_gpu = [a for a in accelerators if a in cfg.GPU_ACCELERATORS]
    if needs_gpu and kind is not InstanceKind.GPU:
        raise ConfigError(
            f"search.space.accelerator: {', '.join(needs_gpu)} need GPU workers, and this study's workers have "
            "none (no GPU found, or workers.gpus_per_worker is 0)"
        )
    if providers is None:
        return
    # OpenVINO runs on the CPU on any worker (SearchSpace.to_spec), so its provider is the same on GPU workers.
    wanted = {a: execution_provider(a, InstanceKind.CPU if a == "openvino" else kind) for a in accelerators}
    missing = {a: p for a, p in wanted.items() if p not in providers}
    if not missing:
        return
    raise _lacking(missing, wanted, providers, kind)


def _lacking(
    missing: Mapping[str, str], wanted: Mapping[str, str], providers: Collection[str], kind: InstanceKind
) -> ConfigError:
    """The error for accelerators whose providers the installed ONNX Runtime lacks, naming the extra that has them."""
    on_gpu = " on GPU workers" if kind is InstanceKind.GPU else ""
    needs = "; ".join(f"{a}{on_gpu if a == 'none' else ''} needs {p}" for a, p in missing.items())
    if not providers:
        return ConfigError(
            f"search.space.accelerator: {needs}, and there is no onnxruntime module here; install the cpu or the "
            "gpu extra (bash scripts/setup.sh picks the one for this machine)"
        )
    lacks = f"search.space.accelerator: {needs}, which the ONNX Runtime installed here lacks"
    lacks += f" (its providers: {', '.join(providers)})"
    extras = {a: PROVIDER_EXTRAS[p] for a, p in wanted.items() if p in PROVIDER_EXTRAS}
    if len(set(extras.values())) > 1:
        by_extra = ", ".join(f"{a}: the {e} extra" for a, e in extras.items())
        return ConfigError(
            f"{lacks}; no one ONNX Runtime build has them all ({by_extra}): search them in separate studies"
        )
    extra = next(iter(extras.values()), "cpu")
    # Both builds provide the onnxruntime module: the set-up script takes the one there out before it installs.
    return ConfigError(f"{lacks}; install the {extra} extra in its place (ORT_BUILD={extra} bash scripts/setup.sh)")


def _distribution(value: Any) -> BaseDistribution | None:
    if isinstance(value, cfg.IntRange):
        if value.low == value.high:
            return None
        high = value.low + (value.high - value.low) // value.step * value.step
        return IntDistribution(value.low, high, log=value.log, step=value.step)
    if isinstance(value, list):
        return CategoricalDistribution(value) if len(value) > 1 else None
    return None


def _nearest(distribution: BaseDistribution, target: Any) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        if target in choices:
            return target
        if isinstance(target, (bool, str)):
            return choices[0]
        return min(choices, key=lambda c: (abs(c - target), c))
    assert isinstance(distribution, IntDistribution)
    clipped = min(max(target, distribution.low), distribution.high)
    return distribution.low + round((clipped - distribution.low) / distribution.step) * distribution.step


def fixed_value(value: Any) -> Any:
    """The constant of a knob that has one value (a scalar, a single choice, a point range)."""
    if isinstance(value, cfg.IntRange):
        return value.low
    if isinstance(value, list):
        return value[0]
    return value
