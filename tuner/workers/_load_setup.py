"""The study file's ``load`` section turned into what a worker's measurement needs."""

from __future__ import annotations

import numpy as np

from tuner.config import StudyConfig
from tuner.measure import EngineSettings, SweepPlan, output_region_bytes
from tuner.model import load_samples
from tuner.model_info import ModelInfo


def sweep_plan(cfg: StudyConfig) -> SweepPlan:
    """The concurrencies to measure: the fixed list, or the search within the latency budget.

    The search's budget left out is the study's first constraint with a maximum on a latency
    metric; with none, the search stops where throughput stops growing.
    """
    load = cfg.load
    if load.concurrency != "auto":
        return SweepPlan(fixed=tuple(load.concurrency))
    search = load.concurrency_search
    metric, budget = search.metric, search.budget
    if metric is None:
        metric, budget = cfg.latency_budget() or (None, None)
    return SweepPlan(
        start=search.start,
        max=search.max,
        min_gain_pct=search.min_gain_pct,
        refine_steps=search.refine_steps,
        metric=metric,
        budget=budget,
        screened=search.screened_steps,
    )


def engine_settings(cfg: StudyConfig, model: ModelInfo) -> EngineSettings:
    load = cfg.load
    input_data = load.input_data if isinstance(load.input_data, str) else "random"
    if input_data == "auto":
        # random integers would be out of range for ids and indices
        integer = any(t.dtype not in ("FP16", "FP32", "FP64") for t in model.inputs)
        input_data = "zero" if integer else "random"
    return EngineSettings(
        engine=load.engine,
        window_ms=load.measurement_window_ms,
        stability_percentage=load.stability_percentage,
        max_windows=load.max_windows,
        protocol=load.protocol,
        input_data=input_data,
        screen_window_ms=screen_window_ms(load.measurement_window_ms),
        shared_memory=load.shared_memory,
        output_bytes=output_region_bytes(model) if load.shared_memory != "none" else 0,
    )


#: The shortest window of a screen: shorter ones hold too few requests of a slow config to judge it by.
MIN_SCREEN_WINDOW_MS = 100


def screen_window_ms(window_ms: int) -> int:
    """Each of a screen's three windows: a quarter of the measurement window, at least 100 ms."""
    return max(MIN_SCREEN_WINDOW_MS, window_ms // 4)


def real_samples(cfg: StudyConfig, model: ModelInfo) -> dict[str, np.ndarray] | None:
    """The samples of ``load.input_data`` where it names a file or folder.

    Raises:
        ModelError: the samples do not fit the model's inputs (naming ``load.input_data``).
    """
    if isinstance(cfg.load.input_data, str):
        return None
    return load_samples(cfg.load.input_data, model, "load.input_data")
