"""Which concurrencies to measure a config at: a fixed list, or the search for the highest
throughput within a latency budget.

    plan = SweepPlan(start=1, max=64, metric="latency_p99_ms", budget=200.0)
    points = sweep(measure_at, plan)      # measure_at(concurrency) -> LoadPoint
    points = screened_sweep(screen_at, measure_at, plan)

The search doubles the concurrency from ``start`` while the budget holds and throughput keeps
growing by ``min_gain_pct``; at the first concurrency over budget it bisects the gap to the
last one within budget ``refine_steps`` times. Every point measured is returned, in the order
measured: the whole curve.

``screened_sweep`` takes the search's steps in short screening windows and measures to stability
only the concurrency the search settles on: the screened step of the highest throughput within
budget (the start where none is). Where that full measurement is over budget, the next such step
is measured in full, once. The steps stay on the curve, marked ``screened``, but where measured
in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tuner.trial import LoadPoint


@dataclass(frozen=True)
class SweepPlan:
    """The concurrencies to measure.

    Attributes:
        fixed: Measure exactly these, in order; None searches.
        start / max: The search's first and highest concurrency.
        min_gain_pct: Stop doubling when throughput grows by less than this; None never stops on it.
        refine_steps: Bisections between the last concurrency within budget and the first over.
        metric / budget: The latency metric and its limit; None stops only on the gain.
        screened: Take the search's steps as screens (``screened_sweep``).
    """

    fixed: tuple[int, ...] | None = None
    start: int = 1
    max: int = 64
    min_gain_pct: float | None = 5.0
    refine_steps: int = 3
    metric: str | None = None
    budget: float | None = None
    screened: bool = False

    def within(self, point: LoadPoint) -> bool:
        return self.metric is None or self.budget is None or float(getattr(point, self.metric)) <= self.budget


def sweep(measure_at: Callable[[int], LoadPoint], plan: SweepPlan) -> list[LoadPoint]:
    """Measures the plan's concurrencies (see the module doc)."""
    if plan.fixed is not None:
        return [measure_at(c) for c in plan.fixed]
    points = [measure_at(plan.start)]
    if not plan.within(points[0]):
        return points
    good = points[0]
    while good.concurrency < plan.max:
        step = measure_at(min(2 * good.concurrency, plan.max))
        points.append(step)
        if not plan.within(step):
            points += _bisect(measure_at, plan, good.concurrency, step.concurrency)
            break
        grew = plan.min_gain_pct is None or step.throughput >= good.throughput * (1 + plan.min_gain_pct / 100.0)
        if not grew:
            break
        good = step
    return points


def screened_sweep(
    screen_at: Callable[[int], LoadPoint], measure_at: Callable[[int], LoadPoint], plan: SweepPlan
) -> list[LoadPoint]:
    """The search on screens, then the concurrency it settles on measured to stability (see the module doc)."""
    steps = sweep(screen_at, plan)
    within = sorted((p for p in steps if plan.within(p)), key=lambda p: p.throughput, reverse=True)
    full: list[LoadPoint] = []
    for step in within[:2] or steps[:1]:
        full.append(measure_at(step.concurrency))
        if plan.within(full[-1]):
            break
    measured = {p.concurrency for p in full}
    return [p for p in steps if p.concurrency not in measured] + full


def _bisect(measure_at: Callable[[int], LoadPoint], plan: SweepPlan, good: int, bad: int) -> list[LoadPoint]:
    points = []
    for _ in range(plan.refine_steps):
        middle = (good + bad) // 2
        if middle in (good, bad):
            break
        point = measure_at(middle)
        points.append(point)
        good, bad = (middle, bad) if plan.within(point) else (good, middle)
    return points


def edge(points: list[LoadPoint], plan: SweepPlan) -> tuple[LoadPoint | None, LoadPoint | None]:
    """The highest concurrency measured within budget, and the lowest one over it above that."""
    within = [p for p in points if plan.within(p)]
    best = max(within, key=lambda p: p.concurrency, default=None)
    above = [p for p in points if not plan.within(p) and (best is None or p.concurrency > best.concurrency)]
    return best, min(above, key=lambda p: p.concurrency, default=None)
