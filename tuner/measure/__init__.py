"""Measuring a loaded model: load engines, the concurrency sweep, usage and server counters.

    points = sweep(measure_at, plan)     # LoadPoints, one per concurrency the plan reaches

``measure_at`` measures one concurrency with a load engine: ``PerfAnalyzer`` or ``BuiltinEngine``,
both keep the ``LoadEngine`` contract.

``engine`` holds that contract and the probe (server counters and CPU/GPU usage around a
window); ``warmup`` sends the first requests and the validation batch.
"""

from __future__ import annotations

from tuner.measure._builtin import BuiltinEngine, request_samples
from tuner.measure._engine import EngineSettings, LoadEngine, Measured, Probe, measure_trusted
from tuner.measure._perf_analyzer import (
    PerfAnalyzer,
    find_binary,
    output_region_bytes,
    shared_memory_args,
    write_input_json,
)
from tuner.measure._sweep import SweepPlan, screened_sweep, sweep
from tuner.measure._usage import GpuReader, UsageMonitor, nvml_reader
from tuner.measure._warmup import infer_samples, warm_up

__all__ = [
    "BuiltinEngine",
    "EngineSettings",
    "GpuReader",
    "LoadEngine",
    "Measured",
    "PerfAnalyzer",
    "Probe",
    "SweepPlan",
    "UsageMonitor",
    "find_binary",
    "infer_samples",
    "measure_trusted",
    "nvml_reader",
    "output_region_bytes",
    "request_samples",
    "screened_sweep",
    "shared_memory_args",
    "sweep",
    "warm_up",
    "write_input_json",
]
