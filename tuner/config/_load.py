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
    MAX_REMEASURE_LOADS,
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
    where throughput stops growing. With ``screened_steps`` (the default) each step is measured in
    the screen's short windows (``early_stop``) and only the concurrency the search settles on (the
    step of the highest throughput within the budget) is measured to stability, and the trial is
    judged by that; ``false`` measures every step to stability.
    """

    start: Concurrency = 1
    max: Concurrency = 64
    min_gain_pct: Annotated[float, Field(ge=0, le=MAX_GAIN_PCT)] | None = 5.0
    refine_steps: Annotated[int, Field(ge=0, le=MAX_REFINE_STEPS)] = 3
    metric: str | None = None
    budget: Annotated[float, Field(gt=0)] | None = None
    screened_steps: bool = True

    _metric = field_validator("metric")(classmethod(lambda cls, v: v if v is None else _known_metric(v)))

    @model_validator(mode="after")
    def _ordered(self) -> ConcurrencySearch:
        if self.start > self.max:
            raise ValueError(f"start ({self.start}) is above max ({self.max})")
        if (self.metric is None) != (self.budget is None):
            raise ValueError("give metric and budget together, or neither")
        return self


class Remeasure(_Strict):
    """Fresh loads, after the search, of the configs that could still be recommended (tuner.study).

    ``loads`` is the budget of fresh loads: ``auto`` is a quarter of the study's trials
    (``search.n_trials``, or the trials run where only a timeout is set), 0 turns re-measuring off.
    ``max_loads_per_config`` caps the loads of one config, the search's own load included.
    The older ``top``/``repeats`` are still read: ``top: 0`` is ``loads: 0``, otherwise ``repeats``
    more loads of each of the ``top`` configs is ``max_loads_per_config: repeats + 1`` and
    ``loads: top * repeats``.
    """

    loads: Literal["auto"] | Annotated[int, Field(ge=0, le=MAX_REMEASURE_LOADS)] = "auto"
    max_loads_per_config: Annotated[int, Field(ge=1, le=MAX_REMEASURE)] = 3

    @model_validator(mode="before")
    @classmethod
    def _older_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not {"top", "repeats"} & data.keys():
            return data
        if {"loads", "max_loads_per_config"} & data.keys():
            raise ValueError("top and repeats are the older form of loads and max_loads_per_config: give one form")
        top, repeats = data.get("top", 3), data.get("repeats", 3)
        for name, value, low in (("top", top, 0), ("repeats", repeats, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_REMEASURE:
                raise ValueError(
                    f"{name}: an integer from {low} to {MAX_REMEASURE} (or use loads and max_loads_per_config)"
                )
        rest = {k: v for k, v in data.items() if k not in ("top", "repeats")}
        if top == 0:
            return rest | {"loads": 0}
        return rest | {"loads": top * repeats, "max_loads_per_config": repeats + 1}

    def budget(self, trials: int) -> int:
        """The fresh loads a study of ``trials`` trials may spend."""
        return trials // 4 if self.loads == "auto" else self.loads


class EarlyStop(_Strict):
    """Stopping clearly hopeless configs after a short screening measurement (tuner.trial.Screen).

    A trial's first concurrency is first measured in three short windows, whatever their spread
    (a quarter of ``measurement_window_ms`` each, at least 100 ms). The trial stops there, stored
    PRUNED with the reason, where the study's latency constraint metric is over ``latency_factor``
    times its budget (far over it: more load will not bring it back; judged where the first
    concurrency is the lowest), or throughput is under ``throughput_share`` of the best a feasible
    config measured so far at that concurrency (judged where throughput is a maximized objective and
    the first concurrency is the highest measured, as with the default ``[8]``; not under ``auto``,
    where a config with a batcher can start slow and end the best), or the variant's answers,
    checked after the load, are over the study's ``accuracy_drop`` bound (no load or knob changes
    them; judged whatever the concurrency). Otherwise it is measured to
    stability as usual, as is one whose screen stays contaminated. With nothing to judge by, nothing
    is screened; nor is the model's default config, the baseline, or a fresh load of a contender.
    ``enabled: false`` measures every trial in full.
    """

    enabled: bool = True
    latency_factor: Annotated[float, Field(gt=1)] = 2.0
    throughput_share: Annotated[float, Field(gt=0, lt=1)] = 0.5


class LoadSettings(_Strict):
    """How each config is measured.

    ``concurrency`` is a list of concurrencies to measure, or ``auto`` for the search of
    ``concurrency_search``. ``input_data`` is ``random``, ``zero``, or a ``.npy``/``.npz`` file
    or folder of them with real samples; ``auto`` is random, but zero for integer inputs (ids
    and indices). ``shared_memory: system`` has perf_analyzer pass every request's tensors through
    system shared memory instead of the wire (``none``, the default): it measures the server as a
    client on its own host would use it, without the load generator's and the server's cost of
    sending the tensors over gRPC or HTTP; perf_analyzer only, with a server that shares the
    worker's ``/dev/shm`` (``server.launch`` embedded or local, or docker with ``--ipc=host``).
    A window where other processes used more than ``contamination_cpu_pct`` of a core is
    measured again up to ``contamination_retries`` times, then kept and flagged.
    """

    engine: Literal["perf_analyzer", "builtin"] = "perf_analyzer"
    concurrency: (
        Literal["auto"] | Annotated[list[Concurrency], Field(min_length=1, max_length=MAX_CONCURRENCY_LEVELS)]
    ) = [8]
    concurrency_search: ConcurrencySearch = ConcurrencySearch()
    measurement_window_ms: Annotated[int, Field(ge=100, le=MAX_WINDOW_MS)] = 2000
    stability_percentage: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_windows: Annotated[int, Field(ge=3, le=MAX_WINDOWS)] = 10
    warmup_requests: Annotated[int, Field(ge=0, le=MAX_WARMUP_REQUESTS)] = 4
    protocol: Literal["grpc", "http"] = "grpc"
    shared_memory: Literal["none", "system"] = "none"
    input_data: Literal["auto", "random", "zero"] | Path = "auto"
    contamination_cpu_pct: Annotated[float, Field(gt=0, le=MAX_CPU_PCT)] = 30.0
    contamination_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 1
    remeasure: Remeasure = Remeasure()
    early_stop: EarlyStop = EarlyStop()
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
        if self.engine == "builtin" and self.shared_memory != "none":
            raise ValueError(
                "the builtin engine sends tensors over gRPC: leave shared_memory out, or use perf_analyzer"
            )
        return self
