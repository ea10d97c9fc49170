"""The ``load`` section: how each config is measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.config._base import _known_metric, _resolve, _Strict
from tuner.config._limits import (
    MAX_CONCURRENCY,
    MAX_CONCURRENCY_LEVELS,
    MAX_CPU_PCT,
    MAX_GAIN_PCT,
    MAX_REFINE_STEPS,
    MAX_REMEASURE,
    MAX_RETRIES,
    MAX_TIMEOUT_S,
    MAX_WARMUP_REQUESTS,
    MAX_WINDOW_MS,
    MAX_WINDOWS,
)

Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)]


class ConcurrencySearch(_Strict):
    """How ``concurrency: auto`` looks for the highest throughput within the latency budget.

    Concurrency doubles from ``start`` until the budget metric exceeds the budget, throughput
    grows by less than ``min_gain_pct`` (null: never stop on that) or ``max`` is reached; past the budget, up to
    ``refine_steps`` bisections narrow the edge. The budget left out is the study's constraint
    on a latency metric (e.g. ``latency_p99_ms: {max: 200}``); with neither, the search stops
    where throughput stops growing.
    """

    start: Concurrency = 1
    max: Concurrency = 64
    min_gain_pct: Annotated[float, Field(ge=0, le=MAX_GAIN_PCT)] | None = 5.0
    refine_steps: Annotated[int, Field(ge=0, le=MAX_REFINE_STEPS)] = 3
    metric: str | None = None
    budget: Annotated[float, Field(gt=0)] | None = None

    _metric = field_validator("metric")(classmethod(lambda cls, v: v if v is None else _known_metric(v)))

    @model_validator(mode="after")
    def _ordered(self) -> ConcurrencySearch:
        if self.start > self.max:
            raise ValueError(f"start ({self.start}) is above max ({self.max})")
        if (self.metric is None) != (self.budget is None):
            raise ValueError("give metric and budget together, or neither")
        return self


class Remeasure(_Strict):
    """Fresh loads of the best configs at the end of a study, before one is recommended."""

    top: Annotated[int, Field(ge=0, le=MAX_REMEASURE)] = 3
    repeats: Annotated[int, Field(ge=1, le=MAX_REMEASURE)] = 3


class LoadSettings(_Strict):
    """How each config is measured.

    ``concurrency`` is a list of concurrencies to measure, or ``auto`` for the search of
    ``concurrency_search``. ``input_data`` is ``random``, ``zero``, or a ``.npy``/``.npz`` file
    or folder of them with real samples; ``auto`` is random, but zero for integer inputs (ids
    and indices). A window where other processes used more than ``contamination_cpu_pct`` of a
    core is measured again up to ``contamination_retries`` times, then kept and flagged.
    """

    engine: Literal["perf_analyzer", "builtin"] = "perf_analyzer"
    concurrency: Literal["auto"] | Annotated[
        list[Concurrency], Field(min_length=1, max_length=MAX_CONCURRENCY_LEVELS)
    ] = [8]
    concurrency_search: ConcurrencySearch = ConcurrencySearch()
    measurement_window_ms: Annotated[int, Field(ge=100, le=MAX_WINDOW_MS)] = 2000
    stability_percentage: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_windows: Annotated[int, Field(ge=3, le=MAX_WINDOWS)] = 10
    warmup_requests: Annotated[int, Field(ge=0, le=MAX_WARMUP_REQUESTS)] = 4
    protocol: Literal["grpc", "http"] = "grpc"
    input_data: Literal["auto", "random", "zero"] | Path = "auto"
    contamination_cpu_pct: Annotated[float, Field(gt=0, le=MAX_CPU_PCT)] = 30.0
    contamination_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 1
    remeasure: Remeasure = Remeasure()
    trial_timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 900.0

    @field_validator("concurrency", mode="before")
    @classmethod
    def _scalar_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("input_data")
    @classmethod
    def _existing_samples(cls, value: str | Path, info: ValidationInfo) -> str | Path:
        if not isinstance(value, Path):
            return value
        path = _resolve(value, info)
        if not (path.is_dir() or (path.is_file() and path.suffix in (".npy", ".npz"))):
            raise ValueError(f"{path} is not an existing .npy/.npz file or folder (or random, zero, auto)")
        return path

    @model_validator(mode="after")
    def _builtin_speaks_grpc(self) -> LoadSettings:
        if self.engine == "builtin" and self.protocol != "grpc":
            raise ValueError("the builtin engine speaks gRPC: leave protocol out or set grpc")
        return self


