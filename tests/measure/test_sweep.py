"""The concurrency search's decisions, on curves given as functions of concurrency.

The real server's curve is tested in tests/integration/test_measurement.py; here the curve is
a plain function so that each branch of the search is reached on purpose.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuner.measure import SweepPlan, screened_sweep, sweep
from tuner.measure._sweep import edge
from tuner.trial import LoadPoint


def _curve(throughput: Callable[[int], float], p99: Callable[[int], float]) -> tuple[Callable[[int], LoadPoint], list[int]]:
    asked: list[int] = []

    def measure_at(c: int) -> LoadPoint:
        asked.append(c)
        return LoadPoint(c, throughput(c), p99(c), p99(c), p99(c), p99(c), p99(c))

    return measure_at, asked


def test_fixed_list_is_measured_as_given() -> None:
    measure_at, asked = _curve(lambda c: 10.0 * c, lambda c: 1.0)
    points = sweep(measure_at, SweepPlan(fixed=(8, 2, 4)))
    assert asked == [8, 2, 4] and [p.concurrency for p in points] == [8, 2, 4]


def test_doubles_then_bisects_to_the_budget_edge() -> None:
    # p99 = 10 ms per request in flight: the budget of 125 ms admits 12, not 13.
    measure_at, asked = _curve(lambda c: 100.0 * c, lambda c: 10.0 * c)
    plan = SweepPlan(start=1, max=64, min_gain_pct=None, refine_steps=5, metric="latency_p99_ms", budget=125.0)
    points = sweep(measure_at, plan)
    assert asked[:5] == [1, 2, 4, 8, 16]
    best, above = edge(points, plan)
    assert best is not None and above is not None
    assert (best.concurrency, above.concurrency) == (12, 13)


def test_refine_steps_limit_the_bisection() -> None:
    measure_at, asked = _curve(lambda c: 100.0 * c, lambda c: 10.0 * c)
    plan = SweepPlan(start=1, max=64, min_gain_pct=None, refine_steps=1, metric="latency_p99_ms", budget=125.0)
    sweep(measure_at, plan)
    assert asked == [1, 2, 4, 8, 16, 12]


def test_stops_where_throughput_stops_growing() -> None:
    measure_at, asked = _curve(lambda c: 100.0 * min(c, 4), lambda c: 1.0)
    sweep(measure_at, SweepPlan(start=1, max=64, min_gain_pct=5.0))
    assert asked == [1, 2, 4, 8]


def test_over_budget_at_the_start_measures_nothing_more() -> None:
    measure_at, asked = _curve(lambda c: 100.0, lambda c: 500.0)
    sweep(measure_at, SweepPlan(start=2, metric="latency_p99_ms", budget=100.0))
    assert asked == [2]


@pytest.mark.parametrize("maximum", [5, 64])
def test_never_goes_past_max(maximum: int) -> None:
    measure_at, asked = _curve(lambda c: 100.0 * c, lambda c: 1.0)
    sweep(measure_at, SweepPlan(start=1, max=maximum, min_gain_pct=None))
    assert max(asked) == maximum


def _screened(
    screen: Callable[[int], tuple[float, float]], full: Callable[[int], tuple[float, float]]
) -> tuple[Callable[[int], LoadPoint], Callable[[int], LoadPoint], list[tuple[str, int]]]:
    """A screen and a full measurement of one curve, each a (throughput, p99) function; ``asked`` logs both."""
    asked: list[tuple[str, int]] = []

    def at(kind: str, curve: Callable[[int], tuple[float, float]]) -> Callable[[int], LoadPoint]:
        def measure(c: int) -> LoadPoint:
            asked.append((kind, c))
            throughput, p99 = curve(c)
            return LoadPoint(c, throughput, p99, p99, p99, p99, p99, screened=kind == "screen")

        return measure

    return at("screen", screen), at("full", full), asked


PLAN = SweepPlan(start=1, max=64, min_gain_pct=5.0, refine_steps=2, metric="latency_p99_ms", budget=100.0)


def test_screened_steps_then_the_best_within_budget_in_full() -> None:
    # throughput levels off at 4 in flight, p99 = 30 ms per request in flight: the search settles on 2
    curve = lambda c: (100.0 * min(c, 4), 30.0 * c)
    screen_at, measure_at, asked = _screened(curve, curve)

    points = screened_sweep(screen_at, measure_at, PLAN)

    assert asked == [("screen", 1), ("screen", 2), ("screen", 4), ("screen", 3), ("full", 3)]
    assert [(p.concurrency, p.screened) for p in points] == [(1, True), (2, True), (4, True), (3, False)]


def test_a_full_measurement_over_budget_falls_back_to_the_next_step_once() -> None:
    # the screens read p99 too low: in full, 3 in flight is over budget, 2 is within
    screen_at, measure_at, asked = _screened(
        lambda c: (100.0 * min(c, 4), 30.0 * c), lambda c: (100.0 * min(c, 4), 40.0 * c)
    )

    points = screened_sweep(screen_at, measure_at, PLAN)

    assert [a for a in asked if a[0] == "full"] == [("full", 3), ("full", 2)]
    assert [(p.concurrency, p.screened) for p in points if not p.screened] == [(3, False), (2, False)]
    assert sorted(p.concurrency for p in points) == [1, 2, 3, 4]


def test_with_no_step_within_budget_the_start_is_measured_in_full() -> None:
    screen_at, measure_at, asked = _screened(lambda c: (50.0, 500.0), lambda c: (50.0, 500.0))

    points = screened_sweep(screen_at, measure_at, PLAN)

    assert asked == [("screen", 1), ("full", 1)]
    assert [(p.concurrency, p.screened) for p in points] == [(1, False)]
