"""The study file: pydantic models of study.yaml, validated once at the edge.

    cfg = load_config(Path("search_spaces/digits_forest_cpu.yaml"))

Every error names the field path (``search.space.instance_count.low: ...``). Relative paths
in the file, the SQLite database and the work folder included, are relative to the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.errors import ConfigError
from tuner.model_info import TRITON_DTYPES
from tuner.trial import METRICS

SAMPLERS: tuple[str, ...] = ("tpe", "nsga2", "random", "grid")  # tuner.samplers.SAMPLERS
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """A model input given in the study file (to fix its shape or type)."""

    name: str
    shape: list[Annotated[int, Field(ge=-1)]]
    dtype: str = "FP32"

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        value = value.upper().removeprefix("TYPE_")
        if value not in TRITON_DTYPES:
            raise ValueError(f"unknown dtype {value!r}; valid: {', '.join(TRITON_DTYPES)}")
        return value


class ModelSettings(_Strict):
    """The model to tune: a name for Triton, the ONNX file, and the inputs its variants are checked on."""

    name: str
    path: Path
    inputs: list[TensorSpec] = []
    validation_data: Path | None = None
    validation_samples: Annotated[int, Field(ge=1, le=256)] = 8

    @field_validator("validation_data")
    @classmethod
    def _existing_data(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file() or path.suffix not in (".npy", ".npz"):
            raise ValueError(f"{path} is not an existing .npy or .npz file")
        return path

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-' only")
        return value

    @field_validator("path")
    @classmethod
    def _existing_file(cls, value: Path, info: ValidationInfo) -> Path:
        path = _resolve(value, info)
        if not path.is_file():
            hint = ""
            if path.name == "model.onnx" and path.parent.parent.parent.name == "model_repository":
                hint = f" (run `tuner models prepare {path.parent.parent.name}`)"
            raise ValueError(f"model file {path} does not exist{hint}")
        return path


class ServerSettings(_Strict):
    """How each worker runs Triton."""

    launch: Literal["embedded"] = "embedded"
    address: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    grpc_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    startup_timeout_s: Annotated[float, Field(gt=0)] = 60.0

    @model_validator(mode="after")
    def _ports_all_or_none(self) -> ServerSettings:
        given = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if given and len(given) != 3:
            raise ValueError("give all of http_port, grpc_port and metrics_port, or none")
        if len(set(given)) != len(given):
            raise ValueError("http_port, grpc_port and metrics_port must differ")
        return self


class WorkerSettings(_Strict):
    """How many workers, what each may use, and where they run.

    Left out: one worker per GPU where there are GPUs, else one worker; the cores are shared
    equally among the workers.

    ``backend: ray`` runs each worker as a Ray actor (a local Ray, or the cluster at
    ``ray_address``); ``local`` runs the one worker inside the tuner's own process.
    """

    backend: Literal["ray", "local"] = "ray"
    count: Annotated[int, Field(ge=1)] | None = None
    cpus_per_worker: Annotated[int, Field(ge=1)] | None = None
    gpus_per_worker: Annotated[float, Field(ge=0)] | None = None
    ray_address: str | None = None

    @model_validator(mode="after")
    def _local_is_one_worker(self) -> WorkerSettings:
        if self.backend == "local" and (self.count not in (None, 1) or self.ray_address or self.gpus_per_worker):
            raise ValueError("backend local runs one CPU worker in the tuner's process: use backend ray")
        return self


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
    | Annotated[list[StrictInt], Field(min_length=1), Tag("choices")]
    | Annotated[IntRange, Tag("range")],
    Discriminator(_int_dim_kind, custom_error_type="invalid_dimension", custom_error_message=_DIM_ERROR),
]
BoolDim = Annotated[
    Annotated[StrictBool, Tag("fixed")] | Annotated[list[StrictBool], Field(min_length=1), Tag("choices")],
    Discriminator(_bool_dim_kind, custom_error_type="invalid_dimension", custom_error_message=_DIM_ERROR),
]

#: Lowest value each integer knob may take.
_MINIMUMS = {"max_batch_size": 1, "max_queue_delay_us": 0, "instance_count": 1, "cpu_threads": 1}


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


class SearchSpace(_Strict):
    """The knobs to search. A list is a set of choices, {low, high} a range, a scalar a fixed value.

    ``cpu_threads`` left out means each instance gets an equal share of the worker's cores.
    ``accelerator`` and ``precision`` left out mean ONNX Runtime's default provider at FP32.
    """

    max_batch_size: IntDim = [1, 4, 8, 16, 32]
    dynamic_batching: BoolDim = [False, True]
    max_queue_delay_us: IntDim = IntRange(low=0, high=20000, step=100)
    instance_count: IntDim = IntRange(low=1, high=4)
    cpu_threads: IntDim | None = None
    accelerator: _name_dim(ACCELERATORS) = "none"  # type: ignore[valid-type]
    precision: _name_dim(PRECISIONS) = "fp32"  # type: ignore[valid-type]

    @field_validator("max_batch_size", "max_queue_delay_us", "instance_count", "cpu_threads")
    @classmethod
    def _in_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        minimum = _MINIMUMS[info.field_name or ""]
        values = value if isinstance(value, list) else [value.low] if isinstance(value, IntRange) else [value]
        if min(values) < minimum:
            raise ValueError(f"values must be at least {minimum}")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("choices must not repeat")
        return value

    @field_validator("dynamic_batching")
    @classmethod
    def _unique_bools(cls, value: Any) -> Any:
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError("choices must not repeat")
        return value


class SearchSettings(_Strict):
    """The sampler and the budget of the search."""

    sampler: str = "tpe"
    n_trials: Annotated[int, Field(ge=1)] | None = 20
    timeout_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, validation_alias=AliasChoices("timeout_s", "timeout")
    )
    seed: int | None = None
    space: SearchSpace = SearchSpace()

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        if value not in SAMPLERS:
            raise ValueError(f"unknown sampler {value!r}; valid: {', '.join(SAMPLERS)}")
        return value


def _known_metric(value: str) -> str:
    if value not in METRICS:
        raise ValueError(f"unknown metric {value!r}; valid: {', '.join(METRICS)}")
    return value


class Objective(_Strict):
    """One objective: a metric and whether to maximize or minimize it."""

    metric: str
    direction: Literal["maximize", "minimize"]

    _metric = field_validator("metric")(classmethod(lambda cls, v: _known_metric(v)))


class Bound(_Strict):
    """Limits on a metric; a trial outside them is infeasible."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class LoadSettings(_Strict):
    """How each config is measured."""

    engine: Literal["perf_analyzer"] = "perf_analyzer"
    concurrency: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [8]
    measurement_window_ms: Annotated[int, Field(ge=100)] = 2000
    stability_percentage: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_windows: Annotated[int, Field(ge=3)] = 10
    warmup_requests: Annotated[int, Field(ge=0)] = 4
    protocol: Literal["grpc", "http"] = "grpc"
    trial_timeout_s: Annotated[float, Field(gt=0)] = 900.0

    @field_validator("concurrency", mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


_DEFAULT_OBJECTIVES = [
    Objective(metric="throughput", direction="maximize"),
    Objective(metric="latency_p99_ms", direction="minimize"),
]


class StudyConfig(_Strict):
    """A whole study file."""

    study: str
    storage: str = Field(default="sqlite:///tuner.db", validate_default=True)
    work_dir: Path = Field(default=Path(".tuner"), validate_default=True)
    model: ModelSettings
    server: ServerSettings = ServerSettings()
    workers: WorkerSettings = WorkerSettings()
    search: SearchSettings = SearchSettings()
    objectives: Annotated[list[Objective], Field(min_length=1)] = _DEFAULT_OBJECTIVES
    constraints: dict[str, Bound] = {}
    load: LoadSettings = LoadSettings()

    @field_validator("study")
    @classmethod
    def _valid_study_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-' only")
        return value

    @field_validator("storage")
    @classmethod
    def _resolve_sqlite(cls, value: str, info: ValidationInfo) -> str:
        return resolve_storage(value, _base_dir(info))

    @field_validator("work_dir")
    @classmethod
    def _resolve_work_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("constraints")
    @classmethod
    def _known_constraints(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        for metric in value:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        return value

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, value: list[Objective]) -> list[Objective]:
        metrics = [o.metric for o in value]
        if len(set(metrics)) != len(metrics):
            raise ValueError("each metric may be an objective once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        fixed_ports = self.server.http_port is not None
        if fixed_ports and (self.workers.count or 1) > 1:
            raise ValueError("server: fixed ports allow one worker only; leave the ports out")
        return self


def resolve_storage(url: str, base_dir: Path) -> str:
    """Makes a relative SQLite path absolute against ``base_dir``; other URLs pass through."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        path = Path(url[len(prefix):])
        if not path.is_absolute():
            return prefix + str((base_dir / path).resolve())
    return url


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, Mapping) else {}
    return Path(context.get("base_dir", "."))


def _resolve(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    return path if path.is_absolute() else (_base_dir(info) / path).resolve()


def parse_config(data: Any, base_dir: Path, source: str = "study file") -> StudyConfig:
    """Validates already-parsed YAML/JSON data.

    Raises:
        ConfigError: with one line per problem, each naming the field path.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of fields at the top level")
    try:
        return StudyConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def load_config(path: Path) -> StudyConfig:
    """Reads and validates a study file.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read study file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    return parse_config(data, path.resolve().parent, source=str(path))


def _describe(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if not _is_union_tag(p))
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    return f"{loc}: {message}" if loc else message


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member tried to the location
    return isinstance(part, str) and (part in _DIM_TAGS or "[" in part or part in ("int", "float", "bool", "str"))
