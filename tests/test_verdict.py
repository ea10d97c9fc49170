"""Configs, not loads: medians, intervals, the front over configs, and the one recommendation rule."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pytest
from optuna.trial import TrialState

from tuner.storage import Store, StoredTrial, StudyInfo, misses, read_study
from tuner.study import baseline_doubt, config_results, nearest_misses, pareto_front, recommend

INFO = StudyInfo(name="s", directions=("maximize", "minimize"), metric_names=("throughput", "latency_p99_ms"),
                 study_file={"constraints": {"latency_p99_ms": {"max": 50.0}}})


def load(number: int, throughput: float, p99: float = 10.0, spread: float = 0.0, **spec: object) -> StoredTrial:
    spec = {"instance_count": 1, "cpu_threads": 1, "precision": "fp32", "dynamic_batching": False,
            "max_batch_size": 8, "max_queue_delay_us": 0} | spec
    return StoredTrial(
        number=number, trial_id=100 + number, state=TrialState.COMPLETE, params=dict(spec),
        values=(throughput, p99), constraints={"latency_p99_ms": p99 - 50.0},
        metrics={"throughput": throughput, "latency_p99_ms": p99, "throughput_spread_pct": spread},
        spec_key=json.dumps(spec, sort_keys=True),
    )


def screen(number: int, p99: float, **spec: object) -> StoredTrial:
    """A trial stopped after its screen (PRUNED), whose metrics are the screen's reading."""
    trial = load(number, 10.0, p99=p99, **spec)
    return dataclasses.replace(trial, state=TrialState.PRUNED, values=None, pruned_reason="stopped")


def test_loads_of_one_config_are_one_result_judged_by_their_median() -> None:
    trials = [load(0, 80.0), load(1, 100.0, instance_count=2), load(2, 90.0), load(3, 82.0)]
    results = config_results(trials, INFO)
    assert [len(r.loads) for r in results] == [3, 1]
    first = results[0]
    assert first.values[0] == pytest.approx(82.0)
    assert first.representative.number == 3  # the load at the median
    assert first.interval == (80.0, 90.0)
    assert first.spread_pct == pytest.approx(100 * 10 / 82)


def test_a_copy_of_a_result_is_not_a_load() -> None:
    copy = StoredTrial(**{**load(1, 95.0).__dict__, "reused_from": 0})
    results = config_results([load(0, 80.0), copy], INFO)
    assert len(results) == 1 and len(results[0].loads) == 1


def test_feasibility_is_judged_on_the_median_not_the_luckiest_load() -> None:
    # two of three loads over the 50 ms budget: the config is infeasible though one load held it
    trials = [load(0, 100.0, p99=40.0), load(1, 100.0, p99=60.0), load(2, 100.0, p99=70.0)]
    (result,) = config_results(trials, INFO)
    assert not result.feasible
    assert [m.text() for m in result.failed_constraints(INFO.bounds)] == ["latency_p99_ms 60 > max 50 (+20%)"]
    assert recommend([result], INFO) is None


def test_a_tie_goes_to_the_cheaper_config_and_says_so() -> None:
    # 2 instances lead by a median of 100 against 97, but their loads overlap
    trials = [load(0, 95.0, instance_count=2), load(1, 100.0, instance_count=2), load(2, 104.0, instance_count=2),
              load(3, 96.0, p99=18.0), load(4, 97.0, p99=19.0), load(5, 99.0, p99=20.0)]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None
    assert rec.leader.values[0] == 100.0 and rec.config.values[0] == 97.0
    assert rec.number == 4
    assert "cheaper" in rec.reason and "instances 1 instead of 2" in rec.reason
    assert rec.reason.endswith("; its median latency_p99_ms 19 against 10")  # what the tie does not weigh


def test_no_tie_where_intervals_are_apart() -> None:
    trials = [load(0, 120.0, instance_count=2), load(1, 121.0, instance_count=2), load(2, 97.0), load(3, 99.0)]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None and rec.config is rec.leader and rec.number == 0
    assert rec.tied == (rec.config,)


def test_window_spread_widens_a_single_load_into_a_tie() -> None:
    trials = [load(0, 100.0, spread=10.0, cpu_threads=2), load(1, 96.0, spread=0.0, precision="fp32"),
              load(2, 99.0, spread=0.0, precision="int8")]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None and rec.number == 1  # 95-105 overlaps both; FP32 with 1 thread is cheapest


def test_a_tie_won_by_precision_says_what_it_saves() -> None:
    trials = [load(0, 100.0, precision="fp16"), load(1, 102.0, precision="fp16"), load(2, 101.0)]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None and rec.number == 2
    assert "precision fp32 instead of fp16, less accuracy at risk" in rec.reason


def test_a_noisy_cheap_config_below_the_leaders_loads_contends_but_does_not_tie() -> None:
    # one load of 1 instance at 90 with windows 30% apart (76.5-103.5) reaches into the leader's 100-102,
    # but its median is below every load of the leader: another load may tell, this one does not
    trials = [load(0, 100.0, instance_count=2), load(1, 101.0, instance_count=2), load(2, 102.0, instance_count=2),
              load(3, 90.0, spread=30.0)]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None and rec.config is rec.leader and rec.leader.values[0] == 101.0
    assert rec.tied == (rec.leader,)
    assert [r.number for r in rec.contenders] == [1, 3]


def test_of_equally_cheap_tied_configs_the_better_median_wins() -> None:
    # the batcher and a larger batch cost no resources: 105 without them ties with the leader's 100-130
    # (median 115), but saves nothing for the throughput it gives up
    trials = [load(0, 100.0, dynamic_batching=True, max_batch_size=8), load(1, 130.0, dynamic_batching=True, max_batch_size=8),
              load(2, 105.0, max_batch_size=1), load(3, 101.0, instance_count=2)]
    rec = recommend(config_results(trials, INFO), INFO)
    assert rec is not None and len(rec.tied) == 3
    assert rec.config is rec.leader and rec.number == 0
    assert "none of them cheaper" in rec.reason


def test_the_front_is_over_configs_by_their_medians() -> None:
    # config A's lucky load (200) alone would dominate B; its median (100) does not
    trials = [load(0, 100.0, p99=20.0), load(1, 200.0, p99=20.0), load(2, 90.0, p99=20.0),
              load(3, 150.0, p99=30.0, instance_count=2)]
    front = pareto_front(config_results(trials, INFO), INFO.directions)
    assert sorted(r.values for r in front) == [(100.0, 20.0), (150.0, 30.0)]


def test_where_no_config_is_feasible_the_nearest_miss_of_each_broken_bound_is_named() -> None:
    info = StudyInfo(name="s", directions=("maximize", "minimize"), metric_names=("throughput", "latency_p99_ms"),
                     study_file={"constraints": {"latency_p99_ms": {"max": 5.0}, "throughput": {"min": 10.0}}})
    # p99 over 5 ms in every config, 9 ms the nearest by its median; throughput held everywhere
    trials = [load(0, 50.0, p99=12.0), load(1, 40.0, p99=8.0, instance_count=2), load(2, 60.0, p99=30.0, instance_count=2),
              load(3, 45.0, p99=9.0, instance_count=2), load(4, 30.0, p99=9.5, instance_count=4)]
    results = config_results(trials, info)

    (nearest,) = nearest_misses(results, info.bounds)

    assert results[1].params["instance_count"] == 2 and nearest.number == results[1].number
    assert nearest.text() == f"the nearest, trial {nearest.number}: latency_p99_ms 9 > max 5 (+80%)"
    assert nearest_misses(results, {"latency_p99_ms": {"max": 10.0}}) == [], "a config held it"


def test_a_trial_stopped_after_its_screen_counts_by_its_screens_reading() -> None:
    bounds = {"latency_p99_ms": {"max": 0.05}}
    complete = config_results([load(0, 50.0, p99=6.2), load(2, 40.0, p99=7.1, instance_count=2)], INFO)
    screened = [screen(1, p99=3.84, instance_count=4), screen(3, p99=4.8, instance_count=3)]

    (nearest,) = nearest_misses(complete, bounds, [*complete[0].loads, *screened])

    assert nearest.text() == "the nearest, trial 1's screen: latency_p99_ms 3.84 > max 0.05 (+7580%)"
    assert [n.number for n in nearest_misses(complete, bounds)] == [0], "by the configs measured in full"
    assert nearest_misses([], bounds, screened)[0].number == 1, "every trial stopped after its screen"
    held = screen(5, p99=0.04, instance_count=8)  # held the budget, and stopped for its answers
    assert nearest_misses(complete, bounds, [*screened, held]) == []


def test_misses_name_the_side_and_the_excess() -> None:
    found = misses({"throughput": 40.0, "latency_p99_ms": 10.0}, {"throughput": {"min": 50.0, "max": None}})
    assert [m.text() for m in found] == ["throughput 40 < min 50 (+20%)"]


def test_a_stored_study_reads_its_attrs_and_rows(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="read", storage=store.optuna, directions=["maximize"])
    study.set_user_attr("study_file", {"constraints": {"latency_p99_ms": {"max": 5.0}}, "search": {"n_trials": 3}})
    first = optuna.trial.create_trial(
        params={"instance_count": 1}, distributions={"instance_count": optuna.distributions.IntDistribution(1, 4)},
        values=[10.0], user_attrs={"metrics": {"throughput": 10.0}, "default_config": True, "spec_key": "a"},
        constraints={"latency_p99_ms": 0.0},
    )
    again = optuna.trial.create_trial(
        params={"instance_count": 1}, distributions={"instance_count": optuna.distributions.IntDistribution(1, 4)},
        values=[12.0], user_attrs={"metrics": {"throughput": 12.0}, "spec_key": "a", "remeasure_of": 0},
        constraints={"latency_p99_ms": 0.0},
    )
    study.add_trials([first, again])
    stored = read_study(study, store)
    assert stored.info.bounds == {"latency_p99_ms": {"max": 5.0}} and stored.info.n_trials == 3
    assert stored.default is not None and stored.default.number == 0
    assert stored.trial(1).remeasure_of == 0 and stored.counted() == 1
    (result,) = config_results(stored.trials, stored.info)
    assert [t.number for t in result.loads] == [0, 1] and result.values == (11.0,)
    store.close()


def flagged(trial: StoredTrial, **flags: object) -> StoredTrial:
    return dataclasses.replace(trial, metrics=trial.metrics | flags)


def test_a_gain_over_a_default_every_load_of_which_was_disturbed_is_called_doubtful() -> None:
    once = config_results([flagged(load(0, 50.0), stable=False, contaminated=True)], INFO)[0]
    assert once.doubts == ("unstable", "contaminated")
    assert baseline_doubt(once) == ("the gain is doubtful: its load was unstable and contaminated; "
                                    "`tuner verify --trial 0` measures the default config again on a fresh server")
    twice = config_results([flagged(load(0, 50.0), contaminated=True), flagged(load(3, 52.0), contaminated=True,
                                                                                 stable=True)], INFO)[0]
    assert twice.doubts == ("contaminated",) and "its 2 loads were contaminated" in baseline_doubt(twice)
    one_clean = config_results([flagged(load(0, 50.0), contaminated=True), load(3, 52.0)], INFO)[0]
    assert one_clean.doubts == (), "its median leans on the clean load"
