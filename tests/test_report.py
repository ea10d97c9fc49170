"""The read helpers the API answers from: the Pareto front without copies, and the best point under limits."""

from __future__ import annotations

import optuna
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner import report
from tuner.trial import LoadPoint

optuna.logging.set_verbosity(optuna.logging.WARNING)

_values = st.sampled_from([0.0, 1.0, 2.0, 3.0, float("inf")])
_trial = st.tuples(
    st.sampled_from(["complete", "complete", "complete", "fail"]),
    st.lists(_values, min_size=3, max_size=3),
    st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 0.5])),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    directions=st.lists(st.sampled_from(["maximize", "minimize"]), min_size=1, max_size=3),
    trials=st.lists(_trial, max_size=25),
)
def test_pareto_front_is_optunas_best_trials(directions: list[str], trials: list) -> None:
    study = optuna.create_study(directions=directions)
    for state, values, constraint in trials:
        trial = study.ask()
        if constraint is not None:
            trial.set_constraint("latency_p99_ms", constraint)
        if state == "fail":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, values[: len(directions)])
    assert [t.number for t in report.pareto_front(study)] == [t.number for t in study.best_trials]


def _point(concurrency: int, throughput: float, p99: float) -> LoadPoint:
    return LoadPoint(concurrency=concurrency, throughput=throughput, latency_avg_ms=p99, latency_p50_ms=p99,
                     latency_p90_ms=p99, latency_p95_ms=p99, latency_p99_ms=p99)


_curve = st.lists(st.tuples(st.sampled_from([10.0, 20.0, 30.0, float("nan")]), st.sampled_from([1.0, 5.0, 9.0])),
                  max_size=4)


@settings(max_examples=200, deadline=None, database=None)
@given(
    curves=st.lists(_curve, max_size=8),
    max_p99=st.one_of(st.none(), st.sampled_from([1.0, 4.0, 5.0, 100.0])),
    min_throughput=st.one_of(st.none(), st.sampled_from([10.0, 25.0, 40.0])),
)
def test_best_point_is_the_highest_throughput_within_the_limits(curves: list, max_p99: float | None,
                                                                min_throughput: float | None) -> None:
    points = {100 + i: tuple(_point(c, t, p) for c, (t, p) in enumerate(curve)) for i, curve in enumerate(curves)}
    numbers = {trial_id: trial_id - 100 for trial_id in points}
    within = [
        (trial_id, point) for trial_id, trial_points in points.items() for point in trial_points
        if point.throughput == point.throughput  # not NaN
        and (max_p99 is None or point.latency_p99_ms <= max_p99)
        and (min_throughput is None or point.throughput >= min_throughput)
    ]
    found = report.Curves(points, numbers).best(max_p99, min_throughput)
    if not within:
        assert found is None
        return
    expected = max(within, key=lambda item: (item[1].throughput, -numbers[item[0]], -item[1].concurrency))
    assert found == expected
