"""The tuner's samplers: the grid over distinct configs, the quick search, warm starts."""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pytest

from tuner import config as cfg
from tuner import samplers
from tuner.errors import ConfigError
from tuner.samplers import SearchSpace, _registry
from tuner.samplers._planned import trial_params
from tuner.storage import ATTR_INTERRUPTED, ATTR_NO_VARIANT
from tuner.trial import InstanceKind, TrialSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "max_batch_size": [1, 4, 8],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": [0, 2000, 8000],
    "instance_count": [1, 2],
    "accelerator": ["none", "openvino"],
}


def _space(worker_cores: int = 2, **knobs: Any) -> SearchSpace:
    return SearchSpace(cfg.SpaceSettings.model_validate(knobs or SPACE), worker_cores)


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def _run(study: optuna.Study, space: SearchSpace, score: Callable[[TrialSpec], float], limit: int = 500) -> list[TrialSpec]:
    """Asks and tells until the sampler is exhausted, as the study loop does; returns the specs."""
    specs = []
    for _ in range(limit):
        if study.sampler.is_exhausted(study):
            return specs
        trial = study.ask()
        spec = space.suggest(trial)
        specs.append(spec)
        study.tell(trial, [score(spec), 1.0])
    raise AssertionError("the sampler never ran out")


# --- grid --------------------------------------------------------------------------------------


def test_grid_covers_every_combination_exactly_once() -> None:
    space = _space()
    study = _study(samplers.make_sampler("grid", 3, space))

    specs = _run(study, space, lambda spec: 1.0)

    keys = [spec.key() for spec in specs]
    # (max batch 1: batching off or on, its delay moot; 4 and 8: batching off + 3 delays) x 2 instance counts
    # x 2 accelerators
    assert len(keys) == 40
    assert len(set(keys)) == 40
    assert set(keys) == {space.key_of(params) for params in space.combinations()}


def test_grid_counts_the_enqueued_default_as_one_of_its_configs() -> None:
    space = _space()
    study = _study(samplers.make_sampler("grid", 0, space))
    study.enqueue_trial(space.default_params())

    specs = _run(study, space, lambda spec: 1.0)

    assert specs[0].key() == space.key_of(space.default_params())
    assert len(specs) == len({s.key() for s in specs}) == 40


def test_grid_order_follows_the_seed() -> None:
    def order(seed: int) -> list[str]:
        space = _space()
        study = _study(samplers.make_sampler("grid", seed, space))
        return [s.key() for s in _run(study, space, lambda spec: 1.0)]

    assert order(5) == order(5)
    assert order(5) != order(6)


# --- quick -------------------------------------------------------------------------------------


def _hill(spec: TrialSpec) -> float:
    """A landscape with one peak: batching on at 2000 us, max batch 8, 2 instances, OpenVINO."""
    score = 10.0 * spec.max_batch_size ** 0.5 + 20.0 * spec.instance_count
    if spec.dynamic_batching:
        score += 15.0 - abs(spec.max_queue_delay_us - 2000) / 400
    return score + (12.0 if spec.accelerator == "openvino" else 0.0)


def test_quick_starts_at_the_default_and_climbs_to_the_peak() -> None:
    space = _space()
    study = _study(samplers.make_sampler("quick", 1, space))

    specs = _run(study, space, _hill)

    assert specs[0].key() == space.key_of(space.default_params())
    best = max(specs, key=_hill)
    assert (best.max_batch_size, best.dynamic_batching, best.max_queue_delay_us) == (8, True, 2000)
    assert (best.instance_count, best.accelerator) == (2, "openvino")
    assert len(specs) < 48  # fewer than the grid


def test_quick_stops_when_no_neighbour_improves() -> None:
    space = _space()
    sampler = samplers.make_sampler("quick", 2, space)
    study = _study(sampler)

    specs = _run(study, space, _hill)

    best = sampler.incumbent(study)
    measured = {s.key(): _hill(s) for s in specs}
    neighbours = sampler.neighbours(best.params)
    assert neighbours, "the peak has neighbours"
    for params in neighbours:
        key = space.key_of(params)
        assert key in measured  # every neighbour of the best config was measured ...
        assert measured[key] <= best.values[0]  # ... and none beats it
    assert len(measured) == len(specs)  # no config twice


def test_quick_stays_on_a_local_peak() -> None:
    space = _space(max_batch_size=[1, 4, 8, 16], dynamic_batching=False, instance_count=[1, 2])

    def two_peaks(spec: TrialSpec) -> float:
        # max batch 4 is a local peak next to the default; 16 is higher but behind a dip at 8
        return {1: 1.0, 4: 3.0, 8: 0.5, 16: 9.0}[spec.max_batch_size] - spec.instance_count

    study = _study(samplers.make_sampler("quick", 0, space))
    specs = _run(study, space, two_peaks)

    assert max(two_peaks(s) for s in specs) == 2.0  # max batch 4, 1 instance: where climbing stops
    assert all(s.max_batch_size != 16 for s in specs)


def test_quick_prefers_feasible_trials() -> None:
    space = _space(max_batch_size=[1, 4, 8], dynamic_batching=False, instance_count=[1, 2])
    sampler = samplers.make_sampler("quick", 0, space)
    study = _study(sampler)
    for params, value, excess in (
        ({"max_batch_size": 4, "instance_count": 1}, 10.0, 0.0),
        ({"max_batch_size": 8, "instance_count": 1}, 50.0, 3.0),  # faster, over the latency budget
    ):
        study.enqueue_trial(params)
        trial = study.ask()
        space.suggest(trial)
        trial.set_constraint("latency_p99_ms", excess)
        study.tell(trial, [value, 1.0])

    assert sampler.incumbent(study).params == {"max_batch_size": 4, "instance_count": 1}


def test_quick_climbs_long_ranges_on_a_doubling_ladder() -> None:
    space = _space(max_batch_size=4, dynamic_batching=True, max_queue_delay_us={"low": 0, "high": 20000, "step": 100})

    ladder = samplers._quick.ladder(space, "max_queue_delay_us")

    assert ladder[:5] == [0, 100, 200, 400, 800]
    assert ladder[-1] == 20000


# --- bo ----------------------------------------------------------------------------------------


def _warm_study(name: str, space: SearchSpace, seed: int = 0, **kwargs: Any) -> optuna.Study:
    """A study started the way the tuner starts one: the default and the warm-start configs queued."""
    study = _study(samplers.make_sampler(name, seed, space, **kwargs))
    for params in samplers.initial_params(name, space):
        study.enqueue_trial(params)
    return study


def _measure(study: optuna.Study, space: SearchSpace, judge: Callable[[TrialSpec], tuple[float, float] | None],
             trials: int) -> list[TrialSpec]:
    """Runs ``trials`` trials; ``judge`` gives (throughput, p99 excess over the budget), or None: FAIL."""
    specs = []
    for _ in range(trials):
        if study.sampler.is_exhausted(study):
            break
        trial = study.ask()
        spec = space.suggest(trial)
        specs.append(spec)
        result = judge(spec)
        if result is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial.set_constraint("latency_p99_ms", result[1])
        study.tell(trial, [result[0], 1.0])
    return specs


def test_bo_measures_each_config_once_then_ends_the_study() -> None:
    space = _space(max_batch_size=[1, 4, 8], dynamic_batching=False, instance_count=[1, 2],
                   accelerator=["none", "openvino"])
    study = _warm_study("bo", space)

    specs = _measure(study, space, lambda spec: (_hill(spec), -1.0), trials=100)

    assert len(specs) == 12 == len({s.key() for s in specs})
    assert study.sampler.is_exhausted(study)


def test_bo_finds_the_peak_in_a_quarter_of_the_grid() -> None:
    space = _space()
    peak = max((space.to_spec(p) for p in space.combinations()), key=_hill)

    for seed in range(3):
        specs = _measure(_warm_study("bo", space, seed), space, lambda spec: (_hill(spec), -1.0), trials=12)
        assert peak.key() in {s.key() for s in specs}, seed


def _budgeted(spec: TrialSpec) -> tuple[float, float]:
    """Bigger batches and longer delays are faster but slower to answer: a p99 budget cuts them off."""
    p99 = 10.0 + spec.max_batch_size * 2.0 + spec.max_queue_delay_us / 500
    return _hill(spec) + 4.0 * spec.max_batch_size, p99 - 20.0


def _best_within_budget(space: SearchSpace) -> TrialSpec:
    feasible = [s for s in map(space.to_spec, space.combinations()) if _budgeted(s)[1] <= 0]
    return max(feasible, key=lambda s: _budgeted(s)[0])


def test_bo_finds_the_best_config_within_the_latency_budget() -> None:
    space = _space()
    specs = _measure(_warm_study("bo", space), space, _budgeted, trials=12)

    assert _best_within_budget(space).key() in {s.key() for s in specs}
    later = specs[4:]  # after the warm start, most proposals keep to the budget
    assert sum(_budgeted(s)[1] <= 0 for s in later) >= len(later) * 0.6


def test_bo_steers_away_from_configs_that_fail() -> None:
    space = _space()
    specs = _measure(
        _warm_study("bo", space), space,
        lambda spec: None if spec.accelerator == "openvino" else (_hill(spec), -1.0), trials=16,
    )

    # the warm start tries OpenVINO once; after it failed, the model keeps away from it
    assert sum(s.accelerator == "openvino" for s in specs[4:]) <= 2


def test_bo_gives_trials_in_flight_different_configs() -> None:
    space = _space()
    study = _warm_study("bo", space)
    _measure(study, space, lambda spec: (_hill(spec), -1.0), trials=6)

    in_flight = [space.suggest(study.ask()).key() for _ in range(3)]  # three idle workers ask at once

    assert len(set(in_flight)) == 3


def test_bo_does_not_count_an_interrupted_trial_as_a_failed_config() -> None:
    space = _space(max_batch_size=[1, 4, 8], dynamic_batching=False, instance_count=[1, 2], accelerator="none")
    sampler = samplers.make_sampler("bo", 0, space, n_startup_trials=0)
    study = _study(sampler)
    _measure(study, space, lambda spec: (_hill(spec), -1.0), trials=2)
    trial = study.ask()
    space.suggest(trial)
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)

    assert len(samplers._bo._finished(study)) == 2


def test_bo_encodes_every_knob_value_and_long_ranges_as_one_column() -> None:
    space = _space(max_batch_size=[1, 8], dynamic_batching=[False, True],
                   max_queue_delay_us={"low": 0, "high": 10000, "step": 100}, instance_count=[1, 2])
    encode = samplers._bo.FeatureEncoder(space)

    off = encode({"max_batch_size": 8, "dynamic_batching": False, "instance_count": 1})
    on = encode({"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 2500, "instance_count": 2})

    # max batch 1|8, batching off|on, the queue delay scaled to [0, 1], instances 1|2
    assert off == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert on == [0.0, 1.0, 0.0, 1.0, 0.25, 0.0, 1.0]


def test_bo_encodes_the_batcher_at_max_batch_1_as_running_without_a_delay() -> None:
    # a batch of at most one request is full at once: the batcher delays nothing, whatever its delay
    onehot = _space(max_batch_size=[1, 8], dynamic_batching=[False, True], max_queue_delay_us=[0, 2000])
    ranked = _space(max_batch_size=[1, 8], dynamic_batching=[False, True], max_queue_delay_us=[500, 2000])
    scaled = _space(max_batch_size=[1, 8], dynamic_batching=[False, True],
                    max_queue_delay_us={"low": 500, "high": 10500, "step": 100})

    # max batch 1|8, batching off|on, delay 0|2000
    assert samplers._bo.FeatureEncoder(onehot)({"max_batch_size": 1, "dynamic_batching": True})[:6] == [1, 0, 0, 1, 1, 0]
    # the ordered columns: max batch rank 0 of 0..1, batching off|on, a delay of 0 ranked as the lowest the space has
    assert samplers._bo.FeatureEncoder(ranked, structured=True)({"max_batch_size": 1, "dynamic_batching": True})[
        :4] == [0.0, 0.0, 1.0, 0.0]
    assert samplers._bo.FeatureEncoder(scaled)({"max_batch_size": 1, "dynamic_batching": True})[4] == 0.0
    # so is a composing model's in a pipeline, by its own knobs
    pipeline = samplers.PipelineSpace({"det": onehot, "rec": onehot}, max_batch_size=8)
    row = samplers._bo.FeatureEncoder(pipeline)({"det.max_batch_size": 1, "det.dynamic_batching": True,
                                                  "rec.max_batch_size": 8, "rec.dynamic_batching": False})
    assert row[:6] == [1, 0, 0, 1, 1, 0] and row[10:16] == [0, 1, 1, 0, 0, 0]  # 4 columns of instances between


def test_bo_structured_encodes_ordered_knobs_by_rank_and_the_threads_against_the_cores() -> None:
    space = _space(4, max_batch_size=[1, 8, 32], dynamic_batching=[False, True], max_queue_delay_us=[0, 1000, 5000],
                   instance_count=[1, 2, 4], cpu_threads=[1, 2, 4], accelerator=["none", "openvino"])
    encode = samplers._bo.FeatureEncoder(space, structured=True)

    row = encode({"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 5000, "instance_count": 4,
                  "cpu_threads": 4, "accelerator": "none"})
    lean = encode({"max_batch_size": 1, "dynamic_batching": False, "instance_count": 1, "cpu_threads": 1,
                   "accelerator": "openvino"})

    # max batch rank 1 of 0..2, batching off|on, delay rank 2 of 0..2, instances and threads by rank,
    # none|openvino, then log2(4 x 4 / 4 cores) = 2 on [-3, 3] scaled to [0, 1]
    assert row == [0.5, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 5 / 6]
    assert lean == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1 / 6]  # 1 thread of 4 cores: log2 = -2


def test_bo_gives_the_threads_a_config_runs_against_the_cores_a_knob_of_their_own() -> None:
    space = _space(4, instance_count=[1, 2, 4], cpu_threads=[1, 2, 4])
    encode = samplers._bo.FeatureEncoder(space, threads_knob=True)

    def level(instances: int, threads: int) -> list[float]:
        return encode({"instance_count": instances, "cpu_threads": threads})[-7:]  # log2(threads / cores): -3..3

    assert level(4, 1) == level(1, 4) == level(2, 2) == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # the 4 cores full
    assert level(4, 4) == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # 16 threads on 4 cores: 2
    assert level(1, 1) == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # 1 of 4: -2
    plain = samplers._bo.FeatureEncoder(space)({"instance_count": 1, "cpu_threads": 1})
    assert len(plain) == len(encode({"instance_count": 1, "cpu_threads": 1})) - 7
    assert samplers._bo.ConfigBOSampler(space, 0)._encode.threads == (
        "onehot" if samplers._bo.THREADS_KNOB else None
    )


def test_what_configs_that_fill_the_cores_read_reaches_another_through_the_threads_knob() -> None:
    # 4 cores: throughput rises with the threads up to the cores and falls beyond them, times a max batch
    # size's factor; every config is measured but those of 4 instances x 1 thread, which fill the cores
    space = _space(4, max_batch_size=[1, 4, 16], instance_count=[1, 2, 4], cpu_threads=[1, 2, 4])

    def log_speed(batch: int, instances: int, threads: int) -> float:
        used = instances * threads
        return math.log(min(used, 4)) - 0.5 * max(0.0, math.log2(used / 4)) + {1: 0.0, 4: 0.3, 16: 0.1}[batch]

    measured = [(b, i, t) for b in (1, 4, 16) for i in (1, 2, 4) for t in (1, 2, 4) if (i, t) != (4, 1)]

    def predicted(threads_knob: bool) -> float:
        encode = samplers._bo.FeatureEncoder(space, threads_knob=threads_knob)

        def row(b: int, i: int, t: int) -> list[float]:
            return encode({"max_batch_size": b, "instance_count": i, "cpu_threads": t})

        rows = np.array([row(*config) for config in measured])
        model = samplers._surrogate.fit(rows, np.array([log_speed(*config) for config in measured]), 0, "gp")
        mean, _ = model.predict(np.array([row(4, 4, 1)]), noise=False)
        return float(mean[0])

    truth = log_speed(4, 4, 1)
    assert abs(predicted(threads_knob=True) - truth) < 0.2  # as fast as 1 x 4 and 2 x 2 at that batch size
    assert predicted(threads_knob=False) < truth - 0.5  # 4 instances and 1 thread each read slow elsewhere


def test_bo_takes_only_a_known_surrogate() -> None:
    with pytest.raises(ValueError, match="unknown surrogate .tree."):
        samplers._bo.ConfigBOSampler(_space(), 0, surrogate="tree")


def test_bo_knows_a_variants_accuracy_from_one_of_its_configs() -> None:
    space = _space(max_batch_size=[1, 8], instance_count=[1, 2], accelerator=["none", "openvino"],
                   precision=["fp32", "int8"])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0)
    study = _study(sampler)
    for params, drop_excess in (({"max_batch_size": 1, "instance_count": 1, "accelerator": "openvino",
                                  "precision": "int8"}, 0.1),
                                ({"max_batch_size": 1, "instance_count": 1, "accelerator": "none",
                                  "precision": "int8"}, -0.01)):
        study.enqueue_trial(params)
        trial = study.ask()
        space.suggest(trial)
        trial.set_constraint("accuracy_drop", drop_excess)
        study.tell(trial, [100.0, 1.0])
    left = [p for p in space.combinations() if p["max_batch_size"] == 8 and p["instance_count"] == 2]
    rows = np.array([sampler._encode(p) for p in left])

    scores = sampler.acquisition(study, samplers._bo._finished(study), rows, [sampler.variant_of(p) for p in left])

    by_variant = {(p["accelerator"], p["precision"]): score for p, score in zip(left, scores)}
    assert by_variant[("openvino", "int8")] < -500, "the failed variant's other configs are known to fail"
    assert by_variant[("none", "int8")] > -50, "the passing variant's other configs are known to pass"
    assert by_variant[("openvino", "fp32")] > -500 and by_variant[("none", "fp32")] > -500  # unknown: modelled


def _told(sampler: samplers._bo.ConfigBOSampler, space: SearchSpace,
          outcomes: list[tuple[dict[str, Any], bool]]) -> optuna.Study:
    """A study of ``sampler`` whose trials ran (True) or failed (False) at the given configs."""
    study = _study(sampler)
    for params, ran in outcomes:
        study.enqueue_trial(params)
        trial = study.ask()
        space.suggest(trial)
        if ran:
            trial.set_constraint("latency_p99_ms", -1.0)
            study.tell(trial, [100.0, 1.0])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study


def test_bo_takes_a_variant_that_failed_every_config_as_one_that_may_not_load() -> None:
    space = _space(max_batch_size=[1, 8], instance_count=[1, 2], accelerator=["none", "openvino"],
                   precision=["fp32", "int8"])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0)

    def config(batch: int, instances: int, accelerator: str, precision: str) -> dict[str, Any]:
        return {"max_batch_size": batch, "instance_count": instances, "accelerator": accelerator,
                "precision": precision}

    def log_probs(outcomes: list[tuple[dict[str, Any], bool]]) -> dict[tuple[str, str], float]:
        study = _told(sampler, space, outcomes)
        finished = samplers._bo._finished(study)
        ran = np.array([t.state != optuna.trial.TrialState.FAIL for t in finished])
        left = [p for p in space.combinations() if p["max_batch_size"] == 1 and p["instance_count"] == 2]
        scores = sampler._log_prob_variant_loads(finished, ran, [sampler.variant_of(p) for p in left])
        return {(p["accelerator"], p["precision"]): float(x) for p, x in zip(left, scores)}

    runs = [(config(b, i, "none", "fp32"), True) for b in (1, 8) for i in (1, 2)]
    mixed = [(config(1, 1, "none", "int8"), False), (config(8, 1, "none", "int8"), True)]
    failing_twice = [(config(8, 2, "openvino", "int8"), False), (config(8, 1, "openvino", "int8"), False)]
    once = log_probs(runs + mixed + failing_twice[:1])
    twice = log_probs(runs + mixed + failing_twice)

    # a variant that ran, or was never tried, is the model's to judge
    assert once["none", "fp32"] == once["none", "int8"] == once["openvino", "fp32"] == 0.0
    # one failure in six trials of the variants that run: a variant failing every config is likelier unusable
    assert math.log(0.5) > once["openvino", "int8"] > twice["openvino", "int8"]
    assert twice["openvino", "int8"] < math.log(0.1)
    # where configs of the variants that run fail as often, a variant's failures say less about the variant
    flaky = [(config(b, i, "none", "fp32"), b == 1) for b in (1, 8) for i in (1, 2)]
    assert log_probs(flaky + failing_twice)["openvino", "int8"] > twice["openvino", "int8"]


@pytest.mark.parametrize("variants_first", [True, False])
def test_bo_tries_every_variant_before_it_ranges_over_them_all(variants_first: bool) -> None:
    """Six variants; FP32 without an accelerator looks best from the startup trials, and the
    fastest variant (INT8 on the CPU provider) is unlike its neighbours: variants first finds it
    among the first 6 proposals, the mixed model keeps to what it has seen. (The threads don't
    matter here; with the threads a config runs as a knob of the model's inputs, the model looks at
    two more thread levels before it measures INT8 again.)"""
    space = _space(max_batch_size=[1, 8], instance_count=[1, 2], cpu_threads=[1, 2], accelerator=["none", "openvino"],
                   precision=["fp32", "fp16", "int8"])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=4, variants_first=variants_first)
    study = _study(sampler)
    speed = {("none", "fp32"): 100.0, ("openvino", "fp32"): 60.0, ("none", "fp16"): 20.0,
             ("openvino", "fp16"): 30.0, ("none", "int8"): 400.0, ("openvino", "int8"): 50.0}
    for params in space.combinations():  # the startup: FP32 without an accelerator only
        if params["accelerator"] == "none" and params["precision"] == "fp32" and len(study.trials) < 4:
            study.enqueue_trial(params)

    specs = _measure(study, space, lambda s: (speed[s.accelerator, s.precision] * s.instance_count, -1.0), trials=12)

    proposed = [(s.accelerator, s.precision) for s in specs[4:]]
    if variants_first:
        assert set(proposed[:5]) == set(speed) - {("none", "fp32")}, proposed
        assert ("none", "int8") in proposed[5:8], "the fastest variant, once found, is measured again"
    else:
        assert len(set(proposed)) < 5, proposed


def test_an_accelerator_is_unusable_for_a_load_that_failed_not_a_variant_that_could_not_be_built() -> None:
    space = _space(max_batch_size=[1, 8], accelerator=["none", "openvino"], precision=["fp32", "int8"])
    params = space.params_near({"accelerator": "openvino", "precision": "int8"})
    distributions = {k: space.distributions[k] for k in params}

    def failed(**attrs: Any) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(params=params, distributions=distributions,
                                         state=optuna.trial.TrialState.FAIL, user_attrs=attrs)

    assert samplers.unusable_accelerators([failed()]) == {"openvino"}
    assert samplers.unusable_accelerators([failed(**{ATTR_NO_VARIANT: "int8"})]) == set()
    assert samplers.unusable_accelerators([failed(**{ATTR_INTERRUPTED: True})]) == set()


@pytest.mark.parametrize("unusable_last", [True, False])
def test_bo_does_not_try_first_the_variants_of_an_accelerator_that_ran_nothing(unusable_last: bool) -> None:
    """OpenVINO failed twice at FP32 and ran nothing; INT8 ran on the CPU provider. OpenVINO at INT8 is the one
    variant no trial has: measured first only where that rule is off."""
    space = _space(max_batch_size=[1, 8], dynamic_batching=[False], instance_count=[1, 2],
                   accelerator=["none", "openvino"], precision=["fp32", "int8"])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0, unusable_last=unusable_last)
    ran = [({**p, "accelerator": "none"}, True) for p in space.combinations()
           if p["accelerator"] == "openvino" and p["max_batch_size"] == 1]  # 1 or 2 instances, FP32 or INT8
    failed = [(space.params_near({"accelerator": "openvino", "instance_count": n}), False) for n in (1, 2)]
    study = _told(sampler, space, ran + failed)

    trial = study.ask()
    proposed = space.suggest(trial)

    assert samplers.unusable_accelerators(study.trials) == {"openvino"}
    if unusable_last:
        assert proposed.accelerator == "none", "the models know where OpenVINO fails"
    else:
        assert (proposed.accelerator, proposed.precision) == ("openvino", "int8")


@pytest.mark.parametrize("name", ["bo", "grid", "tpe", "quick"])
def test_a_precision_the_model_has_no_variant_of_is_not_proposed_again(name: str) -> None:
    """INT8 cannot be built (a tree ensemble has nothing to quantize): the first INT8 trial fails with the
    study's ``no_variant`` mark, and no sampler spends another trial on INT8, whatever the accelerator."""
    space = _space(max_batch_size=[1, 8], dynamic_batching=[False], instance_count=[1, 2],
                   accelerator=["none", "openvino"], precision=["fp32", "int8"])
    study = _study(samplers.make_sampler(name, 3, space))
    study.enqueue_trial(space.default_params())
    specs = []
    for _ in range(30):
        if study.sampler.is_exhausted(study):
            break
        trial = study.ask()
        spec = space.suggest(trial)
        specs.append(spec)
        if spec.precision == "int8":
            trial.set_user_attr(ATTR_NO_VARIANT, "int8")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        trial.set_constraint("latency_p99_ms", -1.0)
        study.tell(trial, [spec.instance_count * (3.0 if spec.accelerator == "openvino" else 1.0), 1.0])

    # while a config it can make is left (tpe and quick go on past them: the budget ends their studies)
    assert len([s for s in specs[:9] if s.precision == "int8"]) == 1, "one INT8 trial"
    if name in ("bo", "grid"):
        assert study.sampler.is_exhausted(study), "every config it can make was measured"
        assert len(specs) == 9, "the 8 FP32 configs and one INT8"


def test_tensorrt_counts_apart_from_the_variants_built() -> None:
    """A native server's TensorRT takes the precision as its own setting on the FP32 model: the INT8 variant
    failing to build says nothing of it, until a TensorRT config of it fails the same way."""
    knobs = {"max_batch_size": [1, 8], "dynamic_batching": [False], "accelerator": ["cuda", "tensorrt"],
             "precision": ["fp32", "int8"]}
    space = SearchSpace(cfg.SpaceSettings.model_validate(knobs), 2, InstanceKind.GPU)
    sampler = samplers.make_sampler("grid", 0, space)
    assert isinstance(sampler, samplers.PlannedSampler)
    study = _study(sampler)

    def fail(accelerator: str) -> None:
        study.enqueue_trial({"max_batch_size": 1, "accelerator": accelerator, "precision": "int8"})
        trial = study.ask()
        space.suggest(trial)
        trial.set_user_attr(ATTR_NO_VARIANT, "int8")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def unmade() -> set[str]:
        ruled_out = sampler.unmade(study)
        return {f"{p['accelerator']}/{p['precision']}" for p in space.combinations() if ruled_out(p)}

    assert unmade() == set()
    fail("cuda")
    assert unmade() == {"cuda/int8"}
    fail("tensorrt")
    assert unmade() == {"cuda/int8", "tensorrt/int8"}


def test_bo_on_a_space_it_cannot_list_searches_with_tpe() -> None:
    space = _space(max_batch_size={"low": 1, "high": 64, "log": True}, instance_count=[1, 2])

    sampler = samplers.make_sampler("bo", 0, space)

    assert isinstance(sampler, samplers.UnmeasuredFirst)
    assert isinstance(sampler.inner, optuna.samplers.TPESampler)


def test_a_joint_proposal_keeps_no_delay_where_its_max_batch_size_asks_none() -> None:
    # TPE's joint proposal may take every knob its trials had, a delay with max batch 1 among them
    space = _space()

    class Joint(optuna.samplers.RandomSampler):
        def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: Any) -> dict[str, Any]:
            return {"max_batch_size": 1, "dynamic_batching": True, "max_queue_delay_us": 8000,
                    "instance_count": 2, "accelerator": "none"}

    sampler = samplers.UnmeasuredFirst(Joint(seed=0), space, seed=0)
    study = _study(sampler)

    study.ask()
    proposal = sampler._propose(study, study.get_trials()[-1])

    assert proposal == {"max_batch_size": 1, "dynamic_batching": True, "instance_count": 2, "accelerator": "none"}


# --- registry ----------------------------------------------------------------------------------


def test_gp_without_torch_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(_registry.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))

    with pytest.raises(ConfigError, match="search.sampler: gp needs torch"):
        samplers.make_sampler("gp", 0, _space())


def test_initial_params_start_with_the_default_then_known_good_configs() -> None:
    space = _space()

    first = samplers.initial_params("tpe", space)

    assert first[0] == space.default_params()
    assert first[1:] == samplers.warm_start_params(space)
    assert any(p["instance_count"] == 2 for p in first) and any(p["dynamic_batching"] for p in first)
    assert any(p.get("accelerator") == "openvino" for p in first)
    assert len({space.key_of(p) for p in first}) == len(first) == 4
    assert samplers.initial_params("tpe", space, warm_start=False) == [space.default_params()]
    assert samplers.initial_params("quick", space) == [space.default_params()]


def test_paired_warm_start_puts_each_two_changes_together() -> None:
    space = _space()
    default = space.default_params()

    first = samplers.warm_start_params(space, "pairs")

    changed = [
        (p["instance_count"] != default["instance_count"], p["dynamic_batching"], p["accelerator"] == "openvino")
        for p in first
    ]
    # each of the three changes with each other one: with the default config, every change is on in two
    # configs and off in two
    assert sorted(changed) == sorted([(True, True, False), (True, False, True), (False, True, True)])
    assert all(p["max_batch_size"] == 8 for p in first if p["dynamic_batching"])
    # the dynamic batcher's defaults, as Triton's configuring steps start: no queue delay, in a range of delays too
    ranged = _space(**{**SPACE, "max_queue_delay_us": {"low": 0, "high": 20000, "step": 100}})
    batched = [p for p in samplers.warm_start_params(ranged, "pairs") if p["dynamic_batching"]]
    assert len(batched) == 2 and all(p["max_queue_delay_us"] == 0 for p in batched)


def test_paired_warm_start_without_an_accelerator_to_choose_is_both_changes_alone_and_together() -> None:
    space = _space(max_batch_size=[1, 4, 8], dynamic_batching=[False, True], instance_count=[1, 2])

    first = samplers.warm_start_params(space, "pairs")

    assert [(p["instance_count"], p["dynamic_batching"]) for p in first] == [(2, False), (1, True), (2, True)]
    single = samplers.warm_start_params(space, "single")
    assert [(p["instance_count"], p["dynamic_batching"]) for p in single] == [(2, False), (1, True)]
    with pytest.raises(ValueError, match="unknown warm-start design"):
        samplers.warm_start_params(space, "all")


def test_an_accelerator_that_cannot_load_the_model_leaves_the_warm_start() -> None:
    space = _space()
    without = _space(**{k: v for k, v in SPACE.items() if k != "accelerator"})

    first = samplers.warm_start_params(space, unusable={"openvino"})

    # the design of a space with no accelerator to choose: the two other changes alone and together
    assert [space.key_of(p) for p in first] == [space.key_of(p) for p in samplers.warm_start_params(without)]
    assert all(p["accelerator"] == "none" for p in first)
    assert samplers.initial_params("bo", space, unusable={"openvino"})[1:] == first
    seeds = [space.params_near({"accelerator": "openvino"}), space.params_near({"instance_count": 2})]
    assert samplers.initial_params("bo", space, seeds=seeds, unusable={"openvino"})[1:] == seeds[1:]
    # the default config is measured whatever it runs on
    assert samplers.initial_params("bo", space, unusable={"none"})[0] == space.default_params()


def test_a_pipelines_warm_start_puts_each_model_that_offers_it_on_the_fastest_accelerator() -> None:
    pre = _space(instance_count=[1, 2], dynamic_batching=[False])
    cls = _space(**SPACE)
    pipeline = samplers.PipelineSpace({"pre": pre, "cls": cls}, max_batch_size=8)

    first = samplers.warm_start_params(pipeline)

    assert sorted(p["cls.accelerator"] for p in first) == ["none", "openvino", "openvino"], "as for one model"
    assert samplers.accelerators_of(first[1]) == {"openvino"}
    # a failed trial of OpenVINO on any model, and none run: the warm start goes on without it
    failed = optuna.trial.create_trial(params=first[1], distributions={k: pipeline.distributions[k] for k in first[1]},
                                       state=optuna.trial.TrialState.FAIL)
    ran = optuna.trial.create_trial(params=first[0], distributions={k: pipeline.distributions[k] for k in first[0]},
                                    values=[1.0, 1.0])
    unusable = samplers.unusable_accelerators([ran, failed])
    assert unusable == {"openvino"}
    assert all(p["cls.accelerator"] == "none" for p in samplers.initial_params("bo", pipeline, unusable=unusable))


def test_seeds_take_the_place_of_the_known_good_configs() -> None:
    space = _space()
    seeds = [space.params_near({"instance_count": 3}), space.default_params(), space.params_near({"instance_count": 3})]

    assert samplers.initial_params("bo", space, seeds=seeds) == [space.default_params(), seeds[0]]
    assert samplers.initial_params("bo", space, seeds=[]) == [space.default_params()]
    assert samplers.initial_params("grid", space, seeds=seeds) == [space.default_params()]


@pytest.mark.parametrize("name", ["bo", "tpe", "gp"])
def test_model_based_samplers_measure_a_new_config_each_trial(name: str) -> None:
    # 8 configs: 5 asks after the 3 random ones, each fitting the model again (gp's fits are slow)
    space = _space(max_batch_size=[1, 8], dynamic_batching=False, instance_count=[1, 2],
                   accelerator=["none", "openvino"])
    study = _study(samplers.make_sampler(name, 0, space, n_startup_trials=3))
    keys = []
    for _ in range(8):  # every config of the space
        trial = study.ask()
        spec = space.suggest(trial)
        keys.append(spec.key())
        study.tell(trial, [_hill(spec), 1.0])

    assert len(set(keys)) == 8


def test_bo_per_second_learns_what_measuring_costs() -> None:
    """Instances cost the measurement: 2 instances took 37 s a trial, 1 took 10 s. The cost model puts an
    unmeasured config of 2 instances above one of 1, by at most the log of the ratio (five rows: the
    Gaussian process draws the difference toward their mean)."""
    space = _space(max_batch_size=[1, 4, 8], instance_count=[1, 2])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0, per_second=True)
    study = _study(sampler)
    for batch in (1, 4, 8):
        for instances in (1, 2):
            if (batch, instances) == (4, 2):
                continue  # left unmeasured
            study.enqueue_trial({"max_batch_size": batch, "instance_count": instances})
            trial = study.ask()
            space.suggest(trial)
            trial.set_user_attr("timings_s", {"load_s": 1.0, "measure_s": 9.0 * instances**2})
            study.tell(trial, [100.0, 1.0])
    finished = samplers._bo._finished(study)
    rows = np.array([sampler._encode({"max_batch_size": 4, "instance_count": n}) for n in (1, 2)])

    one, two = sampler.log_seconds(finished, rows)

    assert 0.3 < two - one < math.log(37.0 / 10.0) + 0.2
    assert samplers._bo.ConfigBOSampler(space, 0).per_second is samplers._bo.PER_SECOND
    assert not sampler.log_seconds(finished[:1], rows).any(), "one trial says nothing of what measuring costs"


# --- the models bo scores with -------------------------------------------------------------------


def test_forest_learns_a_threshold_and_is_unsure_where_its_trees_disagree() -> None:
    rng = np.random.default_rng(0)
    rows = rng.uniform(0.0, 1.0, size=(24, 2))
    values = np.where(rows[:, 0] > 0.5, 3.0, 0.0) + rng.normal(0.0, 0.05, 24)  # one knob matters, past a point
    model = samplers._surrogate.fit(rows, values, 0, "forest")

    mean, std = model.predict(np.array([[0.9, 0.1], [0.9, 0.9], [0.1, 0.5]]))

    assert min(mean[0], mean[1]) > 2.0 and mean[2] < 1.0  # the second column is noise to it
    assert (std > 0).all()
    # where the rows do not say which side a config is on, the trees disagree the most
    _, unsure = model.predict(np.array([[0.5, 0.5]]))
    assert unsure[0] > std.max()


def test_a_gp_not_centered_predicts_zero_far_from_its_rows_and_its_values_near_them() -> None:
    rows = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    values = np.array([2.0, 2.2, 2.1, 2.3])  # all over a bound at 0
    far, near = np.array([[40.0, 40.0]]), rows[:1]

    centered = samplers._surrogate.fit(rows, values, 0, "gp")
    at_zero = samplers._surrogate.fit(rows, values, 0, "gp", centered=False)

    assert centered.predict(far)[0][0] == pytest.approx(values.mean(), abs=0.05)
    assert at_zero.predict(far)[0][0] == pytest.approx(0.0, abs=0.05)
    assert at_zero.predict(near)[0][0] == pytest.approx(2.0, abs=0.2)


def test_bo_with_a_forest_finds_the_best_config_within_the_latency_budget() -> None:
    space = _space()
    study = _study(samplers._bo.ConfigBOSampler(space, 0, surrogate="forest"))
    for params in samplers.initial_params("bo", space):
        study.enqueue_trial(params)

    specs = _measure(study, space, _budgeted, trials=16)

    assert _best_within_budget(space).key() in {s.key() for s in specs}
    assert len({s.key() for s in specs}) == len(specs)


def test_bo_spread_startup_configs_differ_from_those_measured_in_every_knob_it_can() -> None:
    space = _space(max_batch_size=[1, 4, 8], dynamic_batching=False, instance_count=[1, 2, 3],
                   accelerator=["none", "openvino"])
    study = _study(samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=3, spread=True))
    study.enqueue_trial(space.default_params())

    specs = _measure(study, space, lambda spec: (_hill(spec), -1.0), trials=3)

    def differing(a: TrialSpec, b: TrialSpec) -> int:
        return sum(getattr(a, k) != getattr(b, k) for k in ("max_batch_size", "instance_count", "accelerator"))

    assert differing(specs[1], specs[0]) == 3  # as far from the default as the space allows
    assert min(differing(specs[2], s) for s in specs[:2]) >= 2
    assert samplers._bo.ConfigBOSampler(space, 0).spread is samplers._bo.SPREAD_STARTUP


def test_a_gaussian_process_trusts_a_reading_less_the_noisier_its_measurement() -> None:
    # a smooth rise along one knob, and one reading far above it whose windows disagreed
    rows = np.linspace(0.0, 1.0, 9).reshape(-1, 1)
    values = rows[:, 0].copy()
    values[4] = 3.0
    noisy = np.zeros(9)
    noisy[4] = 4.0  # the variance its windows' spread gives it: an sd of 2 around it

    trusting, _ = samplers._surrogate.fit(rows, values, 0, "gp").predict(rows[4:5], noise=False)
    wary, _ = samplers._surrogate.fit(rows, values, 0, "gp", noise=noisy).predict(rows[4:5], noise=False)

    assert abs(wary[0] - 0.5) < abs(trusting[0] - 0.5)  # pulled back to its neighbours' line
    assert wary[0] < 1.5


def test_no_two_configs_are_farther_apart_than_the_encoders_diameter() -> None:
    space = _space(max_batch_size=[1, 8, 32], instance_count=[1, 2], accelerator=["none", "openvino"])
    encode = samplers._bo.FeatureEncoder(space)
    rows = np.array([encode(params) for params in space.combinations()])
    farthest = np.sqrt(((rows[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2)).max()
    assert farthest == pytest.approx(encode.diameter())  # configs that differ in every knob

    # the queue delay is no column at all where batching is off: the diameter stays a bound
    encode = samplers._bo.FeatureEncoder(_space())
    rows = np.array([encode(params) for params in _space().combinations()])
    farthest = np.sqrt(((rows[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2)).max()
    assert farthest <= encode.diameter() + 1e-9


def _additive_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three knobs of three values, one column per value; 18 of the 27 configs measured (rows, values),
    their values adding up knob by knob, and the other 9 (each one knob from a measured one)."""
    configs = list(itertools.product(range(3), repeat=3))
    effects = [[0.0, 0.5, 1.0], [0.0, -0.3, 0.4], [0.2, 0.0, -0.6]]

    def row(config: tuple[int, ...]) -> list[float]:
        return [1.0 if config[knob] == value else 0.0 for knob in range(3) for value in range(3)]

    measured = [c for c in configs if sum(c) % 3 != 2]
    values = np.array([sum(effects[knob][c[knob]] for knob in range(3)) for c in measured])
    return np.array([row(c) for c in measured]), values, np.array([row(c) for c in configs if sum(c) % 3 == 2])


def test_a_length_scale_bounded_by_the_space_leaves_doubt_one_knob_from_a_measured_config() -> None:
    # a fit free to take any length scale makes the additive rows one smooth surface
    rows, values, others = _additive_rows()
    diameter = math.sqrt(2 * 3)

    free = samplers._surrogate.fit(rows, values, 0, "gp")
    bounded = samplers._surrogate.fit(rows, values, 0, "gp", longest=diameter)

    assert bounded.model.kernel_.k1.k2.length_scale <= diameter + 1e-9
    assert free.model.kernel_.k1.k2.length_scale > diameter  # the surface over the whole space
    _, sure = free.predict(others, noise=False)
    _, doubting = bounded.predict(others, noise=False)
    assert (doubting > 5 * sure).all()
    sampler = samplers._bo.ConfigBOSampler(_space(), 0, bounded_scale=True)
    assert sampler._longest == pytest.approx(sampler._encode.diameter())
    assert samplers._bo.ConfigBOSampler(_space(), 0, bounded_scale=False)._longest is None


def test_the_prior_keeps_a_few_rows_from_fitting_one_smooth_surface_over_the_space() -> None:
    # the likelihood alone takes the amplitude's upper bound (10^2) and a length scale longer than the
    # space; under Optuna's priors the fit is a unit's neighbourhood and doubts more
    rows, values, others = _additive_rows()
    unit = math.sqrt(2)

    likely = samplers._surrogate.fit(rows, values, 0, "gp")
    probable = samplers._surrogate.fit(rows, values, 0, "gp", prior_unit=unit)

    assert likely.model.kernel_.k1.k1.constant_value == pytest.approx(1e2)
    assert probable.model.kernel_.k1.k1.constant_value < 10.0
    assert probable.model.kernel_.k1.k2.length_scale < likely.model.kernel_.k1.k2.length_scale / 3
    _, sure = likely.predict(others, noise=False)
    _, doubting = probable.predict(others, noise=False)
    assert (doubting > 2 * sure).all()
    # the fit is the most probable: its likelihood plus the prior beats the likelihood-only fit's
    theta_likely, theta_probable = likely.model.kernel_.theta, probable.model.kernel_.theta

    def posterior(theta: np.ndarray) -> float:
        return probable.model.log_marginal_likelihood(theta) + samplers._surrogate.log_prior(theta, unit)[0]

    assert posterior(theta_probable) > posterior(theta_likely)
    assert samplers._bo.ConfigBOSampler(_space(), 0, gp_prior=True)._prior_unit == pytest.approx(unit)
    assert samplers._bo.ConfigBOSampler(_space(), 0, gp_prior=True, surrogate="structured")._prior_unit == 1.0
    assert samplers._bo.ConfigBOSampler(_space(), 0, gp_prior=False)._prior_unit is None


def test_averaging_over_length_scales_weighs_each_fit_by_its_likelihood() -> None:
    rows, values, others = _additive_rows()
    values[5] += 0.8  # one measured config off the additive surface: an interaction
    single = samplers._surrogate.fit(rows, values, 0, "gp")
    averaged = samplers._surrogate.fit(rows, values, 0, "gp", average=True)

    fitted = averaged.fits[0].kernel_.k1.k2.length_scale
    assert fitted == pytest.approx(single.model.kernel_.k1.k2.length_scale)
    scales = [f.kernel_.k1.k2.length_scale for f in averaged.fits[1:]]
    expected = {min(fitted * f, samplers._surrogate.LONGEST_SCALE) for f in samplers._surrogate.AVERAGED_SCALES}
    assert sorted(scales) == pytest.approx(sorted(expected - {fitted}))
    likelihoods = np.array([f.log_marginal_likelihood_value_ for f in averaged.fits])
    relative = np.exp(likelihoods - likelihoods.max())
    assert averaged.weights == pytest.approx(relative / relative.sum())
    # the prediction is the fits' mixture: its mean and variance
    parts = [samplers._surrogate._predict(f, others, False) for f in averaged.fits]
    mean = sum(w * m for w, (m, _) in zip(averaged.weights, parts))
    variance = sum(w * (s**2 + m**2) for w, (m, s) in zip(averaged.weights, parts)) - mean**2
    got_mean, got_std = averaged.predict(others, noise=False)
    assert got_mean == pytest.approx(mean) and got_std == pytest.approx(np.sqrt(variance))
    # shorter and longer scales fit these rows about as well: the average keeps their doubt
    assert (averaged.weights > 0.1).sum() >= 3
    assert (got_std > single.predict(others, noise=False)[1]).all()


def test_averaging_leaves_a_fit_the_rows_single_out_as_it_is() -> None:
    # on purely additive rows the most likely scale is far likelier than a shorter one
    rows, values, others = _additive_rows()
    single = samplers._surrogate.fit(rows, values, 0, "gp")
    averaged = samplers._surrogate.fit(rows, values, 0, "gp", average=True)
    assert averaged.weights[0] > 0.8 and averaged.weights[1:4].sum() < 0.01
    mean, _ = averaged.predict(others, noise=False)
    assert mean == pytest.approx(single.predict(others, noise=False)[0], abs=0.01)
    assert samplers._bo.ConfigBOSampler(_space(), 0, gp_average=True)._average
    assert not samplers._bo.ConfigBOSampler(_space(), 0, gp_average=False)._average
    assert len(samplers._surrogate.fit(rows, values, 0, "gp").fits) == 1  # no average unless asked
    # a length scale per column: each refit scales all of them
    ard = samplers._surrogate.fit(rows, values, 0, "gp-ard", average=True)
    fitted = ard.fits[0].kernel_.k1.k2.length_scale
    bounds = (samplers._surrogate.SHORTEST_SCALE, samplers._surrogate.LONGEST_SCALE)
    scaled = [np.clip(fitted * factor, *bounds) for factor in samplers._surrogate.AVERAGED_SCALES]
    assert len(ard.fits) > 1 and ard.weights.sum() == pytest.approx(1.0)
    for refit in ard.fits[1:]:
        assert any(np.allclose(refit.kernel_.k1.k2.length_scale, scale) for scale in scaled)


def test_the_priors_gradient_is_its_log_densitys() -> None:
    from scipy.optimize import approx_fprime

    for theta in (np.array([0.3, -0.2, -3.0]), np.array([2.0, 1.0, -0.5, 0.4, -10.0])):
        _, gradient = samplers._surrogate.log_prior(theta, 1.5)
        numeric = approx_fprime(theta, lambda t: samplers._surrogate.log_prior(t, 1.5)[0], 1e-7)
        assert gradient == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    # most probable at one unit, the amplitude at 1 and the noise at 0.1 / 30
    best = np.array([0.0, math.log(1.5), math.log(0.1 / 30.0)])
    assert samplers._surrogate.log_prior(best, 1.5)[1] == pytest.approx(np.zeros(3), abs=1e-9)


def test_bo_reads_each_throughputs_noise_from_the_spread_of_its_windows() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["throughput", "latency_p99_ms"])
    for throughput, spread in ((100.0, 0.0), (200.0, 29.32)):
        trial = study.ask()
        trial.set_user_attr("metrics", {"throughput": throughput, "throughput_spread_pct": spread})
        study.tell(trial, [throughput, 1.0])

    noise = samplers._bo._throughput_noise(study, study.trials)

    assert noise is not None and noise[0] == 0.0
    assert noise[1] == pytest.approx(0.1**2, rel=0.01)  # a 29.3% range of three windows: a mean known to 10%
    study.set_metric_names(["latency_p99_ms", "throughput"])
    assert samplers._bo._throughput_noise(study, study.trials) is None  # no spread of the latency's is measured


def test_bo_learns_a_pruned_trials_throughput_where_the_study_has_two_objectives() -> None:
    """Optuna keeps no intermediate value for a study of two objectives: the value of a trial its
    screen stopped is the first objective's metric at the screen's point, so that the model reads
    the config as poor, not as unmeasured (its delay's neighbours, then theirs, would come next)."""
    space = _space(max_batch_size=[1, 8], dynamic_batching=[False, True],
                   max_queue_delay_us={"low": 0, "high": 20000, "step": 100}, instance_count=[1, 2])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0)
    study = _study(sampler)
    study.set_metric_names(["throughput", "latency_p99_ms"])
    for (mbs, batching, instances), throughput in (((1, False, 1), 50.0), ((8, True, 1), 80.0),
                                                   ((1, False, 2), 90.0), ((8, True, 2), 120.0)):
        study.enqueue_trial({"max_batch_size": mbs, "dynamic_batching": batching, "max_queue_delay_us": 0,
                             "instance_count": instances})
        trial = study.ask()
        space.suggest(trial)
        trial.set_constraint("latency_p99_ms", -1.0)
        study.tell(trial, [throughput, 10.0])
    pruned = {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 20000, "instance_count": 2}
    study.enqueue_trial(pruned)
    trial = study.ask()
    space.suggest(trial)
    trial.set_user_attr("metrics", {"throughput": 20.0, "latency_p99_ms": 400.0, "throughput_spread_pct": 2.0})
    trial.set_constraint("latency_p99_ms", -1.0)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    left = [p for p in space.combinations() if p.get("dynamic_batching") and p["max_batch_size"] == 8
            and p["instance_count"] == 2 and p["max_queue_delay_us"] in (100, 19900)]
    rows = np.array([sampler._encode(p) for p in left])

    scores = dict(zip((p["max_queue_delay_us"] for p in left),
                      sampler.acquisition(study, samplers._bo._finished(study), rows)))

    assert scores[19900] < scores[100], "next to the pruned config, the model expects what it read there"
    assert samplers._bo._first_value(study.trials[-1], "throughput") == 20.0


def _delay_space(batch_sizes: list[int], most_in_flight: int | None = None) -> SearchSpace:
    """Max batch sizes, the batcher off or on with a queue delay of 0-2000 us in steps of 100, 1 or 2 instances."""
    knobs = cfg.SpaceSettings.model_validate({
        "max_batch_size": batch_sizes, "dynamic_batching": [False, True],
        "max_queue_delay_us": {"low": 0, "high": 2000, "step": 100}, "instance_count": [1, 2]})
    return SearchSpace(knobs, 2, most_in_flight=most_in_flight)


@pytest.mark.parametrize("waited_last", [True, False])
def test_bo_leaves_for_last_the_delays_every_batch_waits_out(waited_last: bool) -> None:
    space = _delay_space([1, 8], most_in_flight=4)  # 4 in flight: a batch of 8 never fills
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=2, waited_delays_last=waited_last)
    study = _study(sampler)

    # the longer the delay, the better the reading: a model of them is drawn to the waited-out delays
    specs = _measure(study, space, lambda spec: (100.0 + spec.max_queue_delay_us / 10, -1.0), trials=12)

    waited = [space.delay_waited_out({"max_batch_size": s.max_batch_size, "dynamic_batching": s.dynamic_batching,
                                      "max_queue_delay_us": s.max_queue_delay_us}) for s in specs]
    # 4 configs without the batcher, 2 at max batch 1, 2 at max batch 8 without a delay
    assert (sum(waited) == 4) if waited_last else (sum(waited) > 4)
    if waited_last:
        assert not any(waited[:8])


@pytest.mark.parametrize("by_knob", [True, False])
def test_bo_draws_its_startup_configs_a_knob_at_a_time(by_knob: bool) -> None:
    space = _delay_space([4, 8])  # 21 delays per batching config: 84 of the 88 configs batch
    drawn = []
    for seed in range(40):
        sampler = samplers._bo.ConfigBOSampler(space, seed, n_startup_trials=4, startup_by_knob=by_knob)
        drawn += _measure(_study(sampler), space, lambda spec: (1.0, -1.0), trials=4)

    batching_off = sum(not s.dynamic_batching for s in drawn) / len(drawn)
    if by_knob:
        assert 0.35 < batching_off < 0.65, batching_off  # as often as on, as each value of the knob is as likely
        delays = {s.max_queue_delay_us for s in drawn if s.dynamic_batching}
        assert len(delays) > 10  # and the delay drawn among all of its values
    else:
        assert batching_off < 0.2, batching_off  # 4 configs in 88


@pytest.mark.parametrize("at_bound", [True, False])
def test_bo_looks_away_from_configs_that_all_missed_the_budget(at_bound: bool) -> None:
    space = _delay_space([1, 8])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=3, unknown_at_bound=at_bound)
    study = _study(sampler)
    for delay in (1500, 1700, 1900):  # three delays of one config, each over the budget, the longer the more
        study.enqueue_trial({"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": delay,
                             "instance_count": 2})

    specs = _measure(study, space, lambda spec: (100.0, 0.2 + spec.max_queue_delay_us / 2000), trials=4)

    proposed = specs[-1]
    if at_bound:  # a config no trial says anything of is as likely to meet the budget as not
        assert not (proposed.dynamic_batching and proposed.max_batch_size == 8 and proposed.instance_count == 2)
    else:  # centered on the trials, the model sees the likeliest config next to the least infeasible one
        assert (proposed.max_batch_size, proposed.instance_count, proposed.dynamic_batching) == (8, 2, True)


def test_bo_models_an_untried_variants_accuracy_on_the_variants_alone() -> None:
    """Two inaccurate variants (FP16) were measured in the layout that reads fastest: a model of every knob learns
    that layout fails the accuracy bound and sends the next variant's first config elsewhere (a live study did:
    INT8 on the CPU provider was first measured in a slow layout, and never in the fast one, where raw ONNX
    Runtime ran it 1.2x as fast as the study's best). A variant's answers do not depend on its layout."""
    best = {"max_batch_size": 4, "dynamic_batching": False, "instance_count": 2, "cpu_threads": 1}
    other = {"max_batch_size": 8, "dynamic_batching": True, "max_queue_delay_us": 0, "instance_count": 1,
             "cpu_threads": 2}
    space = _space(2, max_batch_size=[1, 2, 4, 8], dynamic_batching=[False, True], max_queue_delay_us=[0, 1000],
                   instance_count=[1, 2], cpu_threads=[1, 2], accelerator=["none", "openvino"],
                   precision=["fp32", "fp16", "int8"])
    sampler = samplers._bo.ConfigBOSampler(space, 0, n_startup_trials=0)
    study = _study(sampler)
    for layout, accelerator, precision, drop_excess in (
        (other, "none", "fp32", -0.05), (best, "openvino", "fp32", -0.05), (other, "openvino", "fp32", -0.05),
        (best, "openvino", "fp16", 0.097), (best, "none", "fp16", 0.097),
    ):
        study.enqueue_trial({**layout, "accelerator": accelerator, "precision": precision})
        trial = study.ask()
        space.suggest(trial)
        trial.set_constraint("accuracy_drop", drop_excess)
        study.tell(trial, [50.0, 1.0])
    complete = samplers._bo._finished(study)
    drops = np.array([t.constraints["accuracy_drop"] for t in complete])
    candidates = [{**layout, "accelerator": "none", "precision": "int8"} for layout in (best, other)]
    variants = [sampler.variant_of(p) for p in candidates]

    alone = sampler._variant_accuracy(complete, drops, variants, seed=0, centered=True)

    assert alone[0] == pytest.approx(alone[1]), "the same variant: the same odds in every layout"
    assert -3.0 < alone[0] < -0.01, "unknown: neither certain to pass nor to fail"
    every_knob = samplers._surrogate.log_prob_at_most_zero(
        sampler._fit(np.array([sampler._encode(trial_params(t)) for t in complete]), drops, 0),
        np.array([sampler._encode(p) for p in candidates]))
    assert every_knob[0] < every_knob[1] - 0.5, "a model of every knob reads the fast layout as failing"
