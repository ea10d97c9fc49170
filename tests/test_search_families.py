"""The default sampler on synthetic landscapes of two families unlike any recorded here: a CPU worker of 16
cores, and a GPU worker (bench/synthetic_families.py runs it over many of them).

Each family is drawn from how the parts behave, each constant a range a landscape's seed draws from:

- ``cores16``: 1-16 instances x 1-16 threads each on 16 cores. An instance's threads speed it up by Amdahl's
  law (a drawn parallel share); instances add up until their threads ask for more than the cores, then lose a
  drawn share per doubling beyond them; the whole is bounded by a drawn memory bandwidth (a soft cap).
  Precision x accelerator is one drawn factor per pair (an interaction, not two effects). The batcher forms
  batches of up to the max batch size from the requests each instance has queued, a drawn share of them
  without a queue delay and all with a long enough one; a batch of b requests runs a drawn per-inference gain
  of log2(b) faster.
- ``gpu``: 1-4 instances on one GPU, the CUDA provider or TensorRT, FP32, FP16 or INT8. TensorRT and FP16 are
  drawn speed-ups (FP16 larger under TensorRT), INT8 slower than FP32 under the CUDA provider (its quantize
  nodes run unfused) and faster under TensorRT; TensorRT fails to build the model at all in some landscapes,
  and INT8 under it in others. A batch of b runs in time proportional to (o + b), o a drawn overhead in
  requests, so throughput grows with the batch until the GPU is busy; a second instance overlaps the idle
  part of the first's time, so it pays with small batches and not with large ones. A config whose instances x
  max batch size is over a drawn memory limit fails to load.

In both, a drawn number of requests is in flight (the study's concurrency), p99 follows from Little's law times
a drawn tail factor plus the queue delay, and the latency budget keeps a drawn share of the configs. No default
of the sampler was chosen on the GPU family; the threads a config runs became an input of its models after
16-core landscapes 401-420 were run (docs/benchmarks.md). The tests' landscapes were none of those, and their seeds
were fixed before they were run (GPU landscape 431 first, which the default misses; 432 after).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import numpy as np
import pytest
from test_search_synthetic import BUDGET, Judge, shuffled_grid, trials_to_target

from tuner import config as cfg
from tuner.samplers import SearchSpace
from tuner.trial import InstanceKind, TrialSpec

CORES16 = {
    "max_batch_size": [1, 4, 16],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 2000, 8000],
    "instance_count": [1, 2, 4, 8, 16],
    "cpu_threads": [1, 2, 4, 8, 16],
    "accelerator": ["none", "openvino"],
    "precision": ["fp32", "int8"],
}
GPU = {
    "max_batch_size": [1, 4, 16, 64],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 500, 2000, 8000],
    "instance_count": [1, 2, 3, 4],
    "accelerator": ["none", "tensorrt"],
    "precision": ["fp32", "fp16", "int8"],
}


def _batch(spec: TrialSpec, in_flight: int, fill: float, fill_delay_us: float) -> float:
    """The mean batch the batcher forms: from the requests an instance has queued, a share of them without a
    delay, all of them with a delay of ``fill_delay_us`` or more; 1 without the batcher."""
    if not spec.dynamic_batching:
        return 1.0
    share = fill + (1.0 - fill) * min(1.0, spec.max_queue_delay_us / fill_delay_us)
    return float(min(spec.max_batch_size, max(1.0, in_flight / spec.instance_count * share)))


def _with_budget(rng: np.random.Generator, speed: Callable[[TrialSpec], float | None], in_flight: int) -> Callable:
    """(throughput, p99 over its budget) from a throughput model: Little's law times a drawn tail, plus the delay,
    against a budget that keeps a drawn share of the configs it is given."""
    tail = float(rng.uniform(1.2, 1.8))
    keep = float(rng.uniform(0.2, 0.6))

    def p99(spec: TrialSpec, throughput: float) -> float:
        return in_flight / throughput * 1000.0 * tail + spec.max_queue_delay_us / 1000.0

    def bind(specs: list[TrialSpec]) -> Judge:
        latencies = sorted(p99(s, t) for s in specs if (t := speed(s)) is not None)
        budget = latencies[max(0, int(keep * len(latencies)) - 1)]

        def judge(spec: TrialSpec) -> tuple[float, float] | None:
            throughput = speed(spec)
            return None if throughput is None else (throughput, p99(spec, throughput) - budget)

        return judge

    return bind


def cores16(seed: int, space: SearchSpace) -> Judge:
    rng = np.random.default_rng(seed)
    variant = {(a, p): float(rng.normal(0.0, 0.4)) for a in CORES16["accelerator"] for p in CORES16["precision"]}
    parallel = float(rng.uniform(0.6, 0.95))  # Amdahl's parallel share of an inference
    oversubscribed = float(rng.uniform(0.1, 0.4))  # lost per doubling of threads beyond the cores
    bandwidth = 16 * float(rng.uniform(0.4, 1.0))  # soft cap, in single-thread inferences at once
    batch_gain = float(rng.uniform(0.0, 0.15))  # per doubling of the batch
    fill = float(rng.uniform(0.3, 0.9))
    fill_delay_us = float(rng.uniform(1000, 8000))
    in_flight = int(rng.choice([16, 32, 64]))

    def speed(spec: TrialSpec) -> float:
        threads = spec.cpu_threads or 1
        per_instance = 1.0 / ((1.0 - parallel) + parallel / threads)
        demand = spec.instance_count * threads
        work = spec.instance_count * per_instance
        if demand > 16:
            work *= 16 / demand * max(0.05, 1.0 - oversubscribed * math.log2(demand / 16))
        work = work / (1.0 + work / bandwidth)
        batch = _batch(spec, in_flight, fill, fill_delay_us)
        return 100.0 * work * math.exp(variant[spec.accelerator, spec.precision]) * (1.0 + batch_gain * math.log2(batch))

    return _with_budget(rng, speed, in_flight)([space.to_spec(p) for p in space.combinations()])


def gpu(seed: int, space: SearchSpace) -> Judge:
    rng = np.random.default_rng(seed)
    tensorrt = float(rng.uniform(1.5, 4.0))
    fp16 = {"none": float(rng.uniform(1.0, 1.6)), "tensorrt": float(rng.uniform(1.5, 3.0))}
    int8 = {"none": float(rng.uniform(0.4, 1.0)), "tensorrt": float(rng.uniform(1.0, 1.8))}
    tensorrt_fails = rng.random() < 0.2
    tensorrt_int8_fails = rng.random() < 0.3
    overhead = float(rng.uniform(2.0, 16.0))  # a batch of b runs in time proportional to overhead + b
    overlap = float(rng.uniform(1.5, 3.0))  # how many instances the GPU can overlap at batch 1
    memory = int(rng.choice([64, 128, 256]))  # instances x max batch size that fits
    fill = float(rng.uniform(0.3, 0.9))
    fill_delay_us = float(rng.uniform(200, 4000))
    in_flight = int(rng.choice([8, 16, 32, 64]))

    def speed(spec: TrialSpec) -> float | None:
        if spec.accelerator == "tensorrt" and (tensorrt_fails or (spec.precision == "int8" and tensorrt_int8_fails)):
            return None
        if spec.instance_count * spec.max_batch_size > memory:
            return None
        factor = tensorrt if spec.accelerator == "tensorrt" else 1.0
        if spec.precision == "fp16":
            factor *= fp16[spec.accelerator]
        elif spec.precision == "int8":
            factor *= fp16[spec.accelerator] * int8[spec.accelerator] if spec.accelerator == "tensorrt" else int8["none"]
        batch = _batch(spec, in_flight, fill, fill_delay_us)
        busy = batch / (overhead + batch)  # the share of an instance's time the GPU computes
        instances = min(spec.instance_count, 1.0 + (overlap - 1.0) * (1.0 - busy))
        instances *= 1.0 - 0.05 * max(0.0, spec.instance_count - instances)  # contention beyond the overlap
        return 100.0 * factor * batch / (overhead + batch) * (overhead + 1.0) * instances

    return _with_budget(rng, speed, in_flight)([space.to_spec(p) for p in space.combinations()])


FAMILIES: dict[str, tuple[dict, int, InstanceKind, Callable[[int, SearchSpace], Judge]]] = {
    "cores16": (CORES16, 16, InstanceKind.CPU, cores16),
    "gpu": (GPU, 16, InstanceKind.GPU, gpu),
}


@pytest.mark.parametrize(
    ("family", "seed"),
    [
        ("cores16", 431),
        pytest.param("gpu", 431, marks=pytest.mark.xfail(strict=True, reason=(
            "29, 29 and 11 trials against a shuffled grid's 39: the default measures each queue delay of max batch "
            "4 and 16, where the load fills every batch, before it tries max batch 64 (docs/benchmarks.md)"))),
        ("gpu", 432),
    ],
)
def test_the_default_sampler_beats_a_shuffled_grid_on_a_family_it_was_not_chosen_on(family: str, seed: int) -> None:
    knobs, cores, kind, draw = FAMILIES[family]
    space = SearchSpace(cfg.SpaceSettings.model_validate(knobs), cores, kind=kind)
    judge = draw(seed, space)

    found = [trials_to_target("bo", s, judge, space, budget=BUDGET) for s in range(3)]
    shuffled = statistics.median(shuffled_grid(s, judge, space) for s in range(25))

    median = statistics.median(math.inf if n is None else n for n in found)
    assert median <= BUDGET and median <= shuffled / 2, (found, shuffled)
