"""The study file's upper bounds (tuner.config._limits): every size, count and time, and names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_config import _error, _minimal, _with, _write, study_dir  # noqa: F401 - study_dir is a fixture

from tuner.config import _limits as limits
from tuner.config import load_config

#: (dotted field, a value just over its bound, the path the message names).
OVER = [
    ("workers.count", limits.MAX_WORKERS + 1, "workers.count"),
    ("workers.count", 1_000_000, "workers.count"),
    ("workers.cpus_per_worker", limits.MAX_CPUS_PER_WORKER + 1, "workers.cpus_per_worker"),
    ("workers.gpus_per_worker", limits.MAX_GPUS_PER_WORKER + 0.5, "workers.gpus_per_worker"),
    ("server.startup_timeout_s", limits.MAX_TIMEOUT_S + 1, "server.startup_timeout_s"),
    ("search.n_trials", limits.MAX_TRIALS + 1, "search.n_trials"),
    ("search.n_startup_trials", limits.MAX_TRIALS + 1, "search.n_startup_trials"),
    ("search.timeout_s", limits.MAX_TIMEOUT_S + 1, "search.timeout_s"),
    ("search.seed", limits.MAX_SEED + 1, "search.seed"),
    ("search.seed", -1, "search.seed"),
    ("search.space.instance_count", 1000, "search.space.instance_count"),
    ("search.space.instance_count", {"low": 1, "high": limits.MAX_INSTANCES + 1}, "search.space.instance_count"),
    ("search.space.max_batch_size", [1, limits.MAX_BATCH_SIZE + 1], "search.space.max_batch_size"),
    ("search.space.max_queue_delay_us", limits.MAX_QUEUE_DELAY_US + 1, "search.space.max_queue_delay_us"),
    ("search.space.cpu_threads", {"low": 1, "high": 100_000}, "search.space.cpu_threads"),
    ("search.space.max_queue_delay_us", {"low": 0, "high": 100_000, "step": 1}, "search.space.max_queue_delay_us"),
    ("search.space.max_batch_size", list(range(1, limits.MAX_KNOB_VALUES + 2)), "search.space.max_batch_size"),
    ("load.concurrency", [100_000], "load.concurrency.0"),
    ("load.concurrency", list(range(1, limits.MAX_CONCURRENCY_LEVELS + 2)), "load.concurrency"),
    ("load.concurrency_search.max", limits.MAX_CONCURRENCY + 1, "load.concurrency_search.max"),
    ("load.concurrency_search.min_gain_pct", 101, "load.concurrency_search.min_gain_pct"),
    ("load.concurrency_search.refine_steps", limits.MAX_REFINE_STEPS + 1, "load.concurrency_search.refine_steps"),
    ("load.measurement_window_ms", limits.MAX_WINDOW_MS + 1, "load.measurement_window_ms"),
    ("load.max_windows", limits.MAX_WINDOWS + 1, "load.max_windows"),
    ("load.warmup_requests", limits.MAX_WARMUP_REQUESTS + 1, "load.warmup_requests"),
    ("load.contamination_cpu_pct", limits.MAX_CPU_PCT + 1, "load.contamination_cpu_pct"),
    ("load.contamination_retries", limits.MAX_RETRIES + 1, "load.contamination_retries"),
    ("load.remeasure.loads", limits.MAX_REMEASURE_LOADS + 1, "load.remeasure.loads"),
    ("load.remeasure.max_loads_per_config", limits.MAX_REMEASURE + 1, "load.remeasure.max_loads_per_config"),
    ("load.trial_timeout_s", limits.MAX_TIMEOUT_S + 1, "load.trial_timeout_s"),
    ("model.validation_samples", 257, "model.validation_samples"),
    ("model.inputs", [{"name": "x", "shape": [2**31]}], "model.inputs"),
    ("model.inputs", [{"name": "x", "shape": [-1, 2**14, 2**14 + 1], "dtype": "FP32"}], "model.inputs"),
    ("model.inputs", [{"name": "x", "shape": [1] * (limits.MAX_RANK + 1)}], "model.inputs.0.shape"),
    ("model.inputs", [{"name": f"x{i}", "shape": [1]} for i in range(limits.MAX_INPUTS + 1)], "model.inputs"),
]


@pytest.mark.parametrize(("field", "value", "path"), OVER, ids=[f"{f}={str(v)[:20]}" for f, v, _ in OVER])
def test_a_value_over_its_bound_names_the_field(study_dir: Path, field: str, value: object, path: str) -> None:
    message = _error(study_dir, _with(field, value))

    assert f"{path}: " in message, message


#: Every float field of the file, each given infinity and NaN.
FLOATS = [
    "server.startup_timeout_s", "workers.gpus_per_worker", "search.timeout_s", "load.trial_timeout_s",
    "load.stability_percentage", "load.contamination_cpu_pct", "load.concurrency_search.min_gain_pct",
    "constraints.latency_p99_ms.max", "constraints.throughput.min",
]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", FLOATS)
def test_infinity_and_nan_are_refused(study_dir: Path, field: str, value: float) -> None:
    message = _error(study_dir, _with(field, value))

    assert f"{field}: " in message, message


def test_an_infinite_budget_is_refused(study_dir: Path) -> None:
    search = {"metric": "latency_p99_ms", "budget": math.inf}
    message = _error(study_dir, _with("load.concurrency_search", search))

    assert "load.concurrency_search.budget: " in message


def test_every_bound_itself_is_accepted(study_dir: Path) -> None:
    data = _minimal(
        workers={"count": limits.MAX_WORKERS, "cpus_per_worker": limits.MAX_CPUS_PER_WORKER,
                 "gpus_per_worker": limits.MAX_GPUS_PER_WORKER},
        server={"startup_timeout_s": limits.MAX_TIMEOUT_S},
        search={"n_trials": limits.MAX_TRIALS, "timeout_s": limits.MAX_TIMEOUT_S, "seed": limits.MAX_SEED,
                "space": {"instance_count": {"low": 1, "high": limits.MAX_INSTANCES},
                          "max_batch_size": [1, limits.MAX_BATCH_SIZE],
                          "max_queue_delay_us": {"low": 0, "high": limits.MAX_QUEUE_DELAY_US, "step": 2000},
                          "cpu_threads": [1, limits.MAX_CPUS_PER_WORKER]}},
        load={"concurrency": list(range(1, limits.MAX_CONCURRENCY_LEVELS + 1)),
              "concurrency_search": {"max": limits.MAX_CONCURRENCY, "min_gain_pct": limits.MAX_GAIN_PCT,
                                     "refine_steps": limits.MAX_REFINE_STEPS},
              "measurement_window_ms": limits.MAX_WINDOW_MS, "max_windows": limits.MAX_WINDOWS,
              "warmup_requests": limits.MAX_WARMUP_REQUESTS, "contamination_cpu_pct": limits.MAX_CPU_PCT,
              "contamination_retries": limits.MAX_RETRIES, "trial_timeout_s": limits.MAX_TIMEOUT_S,
              "remeasure": {"loads": limits.MAX_REMEASURE_LOADS,
                            "max_loads_per_config": limits.MAX_REMEASURE}},
    )
    data["model"]["inputs"] = [{"name": "x", "shape": [-1, limits.MAX_REQUEST_BYTES // 4], "dtype": "FP32"}]

    cfg = load_config(_write(study_dir, data))

    assert cfg.workers.count == limits.MAX_WORKERS
    assert cfg.model.inputs[0].sample_bytes == limits.MAX_REQUEST_BYTES


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["study", "model.name"])
@pytest.mark.parametrize("name", ["name\n", "name\nmore", "x" * (limits.MAX_NAME_LENGTH + 1), "x" * 300, "../x", ""])
def test_bad_names_are_refused(study_dir: Path, field: str, name: str) -> None:
    message = _error(study_dir, _with(field, name))

    assert f"{field}: " in message, message


def test_a_name_of_the_longest_length_is_accepted(study_dir: Path) -> None:
    name = "n" * limits.MAX_NAME_LENGTH
    data = _with("study", name)
    data["model"]["name"] = name  # type: ignore[index]

    cfg = load_config(_write(study_dir, data))

    assert (cfg.study, cfg.model.name) == (name, name)
