"""The ``search`` section: the knobs searched, the sampler and the budget."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.config._base import _resolve, _Strict, _valid_name
from tuner.config._limits import (
    MAX_BATCH_SIZE,
    MAX_CPUS_PER_WORKER,
    MAX_INSTANCES,
    MAX_KNOB_VALUES,
    MAX_QUEUE_DELAY_US,
    MAX_SEED,
    MAX_STEPS,
    MAX_TIMEOUT_S,
    MAX_TRANSFER_STUDIES,
    MAX_TRIALS,
)

SAMPLER_NAMES: tuple[str, ...] = ("bo", "tpe", "nsga2", "gp", "random", "grid", "quick")  # tuner.samplers.SAMPLERS


class IntRange(_Strict):
    """An integer range searched by the sampler."""

    low: int
    high: int
    step: Annotated[int, Field(ge=1)] = 1
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log range needs low >= 1 and step 1")
        values = (self.high - self.low) // self.step + 1
        if values > MAX_KNOB_VALUES:
            raise ValueError(f"the range has {values} values; at most {MAX_KNOB_VALUES} (use a larger step)")
        return self


def _int_dim_kind(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return "choices"
    if isinstance(value, (Mapping, IntRange)):
        return "range"
    if isinstance(value, int) and not isinstance(value, bool):
        return "fixed"
    return None


def _bool_dim_kind(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return "choices"
    return "fixed" if isinstance(value, bool) else None


_DIM_TAGS = ("fixed", "choices", "range")
_DIM_ERROR = "expected a value, a list of choices or {low, high}"
IntDim = Annotated[
    Annotated[StrictInt, Tag("fixed")]
    | Annotated[list[StrictInt], Field(min_length=1, max_length=MAX_KNOB_VALUES), Tag("choices")]
    | Annotated[IntRange, Tag("range")],
    Discriminator(_int_dim_kind, custom_error_type="invalid_dimension", custom_error_message=_DIM_ERROR),
]
BoolDim = Annotated[
    Annotated[StrictBool, Tag("fixed")] | Annotated[list[StrictBool], Field(min_length=1), Tag("choices")],
    Discriminator(_bool_dim_kind, custom_error_type="invalid_dimension", custom_error_message=_DIM_ERROR),
]

#: Lowest and highest value each integer knob may take (tuner.config._limits says why).
_BOUNDS = {
    "max_batch_size": (1, MAX_BATCH_SIZE),
    "max_queue_delay_us": (0, MAX_QUEUE_DELAY_US),
    "instance_count": (1, MAX_INSTANCES),
    "cpu_threads": (1, MAX_CPUS_PER_WORKER),
}


ACCELERATORS: tuple[str, ...] = ("none", "openvino", "cuda", "tensorrt")
GPU_ACCELERATORS: tuple[str, ...] = ("cuda", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


def _name_dim(valid: tuple[str, ...]) -> Any:
    def check(value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        unknown = [v for v in values if v not in valid]
        if unknown:
            raise ValueError(f"unknown {unknown[0]!r}; valid: {', '.join(valid)}")
        if len(set(values)) != len(values):
            raise ValueError("choices must not repeat")
        return value

    return Annotated[str | Annotated[list[str], Field(min_length=1)], AfterValidator(check)]


PERFORMANCE_HINTS: tuple[str, ...] = ("latency", "throughput")
#: The backends that have each knob the Triton config alone does not: the threads of an instance
#: (ONNX Runtime's intra-op threads, OpenVINO's INFERENCE_NUM_THREADS, PyTorch's INTRA_OP_THREAD_COUNT),
#: ONNX Runtime's accelerators and the ONNX precision variants, and OpenVINO's PERFORMANCE_HINT.
KNOB_BACKENDS: dict[str, tuple[str, ...]] = {
    "cpu_threads": ("onnxruntime", "openvino", "pytorch"),
    "accelerator": ("onnxruntime",),
    "precision": ("onnxruntime",),
    "performance_hint": ("openvino",),
}


class SpaceSettings(_Strict):
    """The knobs to search. A list is a set of choices, {low, high} a range, a scalar a fixed value.

    ``cpu_threads`` left out means each instance gets an equal share of the worker's cores.
    ``accelerator`` and ``precision`` left out mean ONNX Runtime's default provider at FP32.

    ``performance_hint`` is the OpenVINO backend's; left out, a model keeps its own.

    For an ensemble the knobs are searched for each composing model apart: a knob given here
    applies to every one (a backend's own knobs to the models of that backend), and
    ``models.<name>`` gives one model its own (``for_model``).
    """

    max_batch_size: IntDim = [1, 4, 8, 16, 32]
    dynamic_batching: BoolDim = [False, True]
    max_queue_delay_us: IntDim = IntRange(low=0, high=20000, step=100)
    instance_count: IntDim = IntRange(low=1, high=4)
    cpu_threads: IntDim | None = None
    accelerator: _name_dim(ACCELERATORS) = "none"  # type: ignore[valid-type]
    precision: _name_dim(PRECISIONS) = "fp32"  # type: ignore[valid-type]
    performance_hint: _name_dim(PERFORMANCE_HINTS) | None = None  # type: ignore[valid-type]
    models: Annotated[
        dict[Annotated[str, AfterValidator(_valid_name)], SpaceSettings], Field(max_length=MAX_STEPS)
    ] = {}

    def for_model(self, name: str, backend: str) -> SpaceSettings:
        """The space of composing model ``name``: its own knobs (``models.<name>``) over the ones given
        for every model (a backend's own knobs, ``KNOB_BACKENDS``, only where it runs on that ``backend``)."""
        shared = {
            k: getattr(self, k)
            for k in self.model_fields_set
            if k != "models" and backend in KNOB_BACKENDS.get(k, (backend,))
        }
        own = self.models.get(name)
        mine = {k: getattr(own, k) for k in own.model_fields_set} if own is not None else {}
        return SpaceSettings.model_validate({**shared, **mine})

    @field_validator("models")
    @classmethod
    def _one_level(cls, value: dict[str, SpaceSettings]) -> dict[str, SpaceSettings]:
        for name, space in value.items():
            if space.models:
                raise ValueError(f"{name}: a composing model's space names no models of its own")
        return value

    @field_validator("max_batch_size", "max_queue_delay_us", "instance_count", "cpu_threads")
    @classmethod
    def _in_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        minimum, maximum = _BOUNDS[info.field_name or ""]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, IntRange):
            values = [value.low, value.high]
        if min(values) < minimum:
            raise ValueError(f"values must be at least {minimum}")
        if max(values) > maximum:
            raise ValueError(f"values must be at most {maximum}")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("choices must not repeat")
        return value

    @field_validator("dynamic_batching")
    @classmethod
    def _unique_bools(cls, value: Any) -> Any:
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("choices must not repeat")
        return value


class Transfer(_Strict):
    """``search.warm_start: {from: [...], configs: N}``: start from the best configs of earlier studies.

    The studies live in the same storage (the same model on another machine, the model's previous
    version, another model on the same hardware). Their configs, best first, are moved into this
    study's space (tuner.samplers.SearchSpace.params_from) and measured first, after the default config.
    """

    # the stored study file is read again (tuner export), so it keeps the name the file uses
    model_config = ConfigDict(serialize_by_alias=True)

    from_: Annotated[
        list[Annotated[str, AfterValidator(_valid_name)]],
        Field(alias="from", min_length=1, max_length=MAX_TRANSFER_STUDIES),
    ]
    # Distinct configs to start from, over all the studies together.
    configs: Annotated[int, Field(ge=1, le=MAX_TRIALS)] = 4

    @field_validator("from_")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each study may be named once")
        return value


def _warm_start_kind(value: Any) -> str:
    return "transfer" if isinstance(value, (Mapping, Transfer)) else "flag"


WarmStart = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[Transfer, Tag("transfer")], Discriminator(_warm_start_kind)
]
#: Names pydantic puts into an error's location for the member of a union it tried.
UNION_TAGS = (*_DIM_TAGS, "flag", "transfer")


class SearchSettings(_Strict):
    """The sampler and the budget of the search."""

    sampler: str = "bo"
    n_trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] | None = 20
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | None = Field(
        default=None, validation_alias=AliasChoices("timeout_s", "timeout")
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    space: SpaceSettings = SpaceSettings()
    # Finished trials before bo/tpe/gp model the results (None: tuner.samplers' default);
    # the warm-start configs come first and count among them.
    n_startup_trials: Annotated[int, Field(ge=0, le=MAX_TRIALS)] | None = None
    # true: start with the default config and a few known-good ones (tuner.samplers.warm_start_params);
    # {from: [studies]}: with the default config and the best configs of those studies (Transfer).
    warm_start: WarmStart = True
    # Answer trials from a recorded landscape (tuner landscape record) instead of Triton.
    replay: Path | None = None

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        if value not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {value!r}; valid: {', '.join(SAMPLER_NAMES)}")
        return value

    @field_validator("replay")
    @classmethod
    def _existing_landscape(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(f"landscape file {path} does not exist (record one with `tuner landscape record`)")
        return path
