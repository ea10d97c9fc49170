"""When a trial may stop after its screen (``load.early_stop``): the thresholds the study sends with it.

    screen = screen_for(cfg, incumbent)     # None where early stopping is off or has nothing to judge by
    pool.submit(ticket, spec, screen)

The worker screens the trial's first concurrency (tuner.trial.Screen). Each rule judges only where
what it sees there holds for the whole trial: the latency rule where that is the sweep's lowest
concurrency (more load does not lower latency), the throughput rule where it is the highest the
trial measures (a fixed list that starts at its highest, such as the default ``[8]``): under the
concurrency search a config with a batcher can start slow and end the best. The throughput is
compared with the best feasible config's at that same concurrency, which only the study knows
(``incumbent``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tuner.config import StudyConfig
from tuner.storage import StoredTrial
from tuner.trial import LoadPoint, Screen


def screen_concurrency(cfg: StudyConfig) -> int:
    """The first concurrency a trial measures: where it is screened."""
    load = cfg.load
    return load.concurrency_search.start if load.concurrency == "auto" else load.concurrency[0]


def judges_throughput(cfg: StudyConfig) -> bool:
    """Whether throughput is a maximized objective, so that one far below the best is hopeless."""
    return any(o.metric == "throughput" and o.direction == "maximize" for o in cfg.objectives)


def screen_for(cfg: StudyConfig, incumbent: float | None) -> Screen | None:
    """The screen of the next trial, or None where nothing would be judged.

    Args:
        cfg: The study file.
        incumbent: The best throughput a feasible config measured at the screen's concurrency so far.
    """
    settings = cfg.load.early_stop
    if not settings.enabled:
        return None
    concurrency = screen_concurrency(cfg)
    fixed = None if cfg.load.concurrency == "auto" else cfg.load.concurrency
    lowest = fixed is None or concurrency == min(fixed)
    highest = fixed is not None and concurrency == max(fixed)
    budget = cfg.latency_budget() if lowest else None
    screen = Screen(
        concurrency=concurrency,
        latency_metric=budget[0] if budget else None,
        latency_budget=budget[1] if budget else None,
        latency_factor=settings.latency_factor,
        incumbent=incumbent if judges_throughput(cfg) and highest else None,
        throughput_share=settings.throughput_share,
        accuracy_bound=cfg.constraints["accuracy_drop"].max if "accuracy_drop" in cfg.constraints else None,
    )
    return screen if screen.judges or screen.accuracy_bound is not None else None


def throughput_at(points: Iterable[LoadPoint], concurrency: int) -> float | None:
    """The throughput measured at ``concurrency``, if it was."""
    return next((p.throughput for p in points if p.concurrency == concurrency), None)


def best_feasible(current: float | None, candidate: float | None) -> float | None:
    """The higher of two throughputs, either of which may be missing."""
    if candidate is None:
        return current
    return candidate if current is None else max(current, candidate)


def incumbent_of(trials: Iterable[StoredTrial], concurrency: int) -> float | None:
    """The best throughput at ``concurrency`` of the stored feasible loads (a study opened again)."""
    best = None
    for trial in trials:
        if trial.feasible and trial.is_load:
            best = best_feasible(best, throughput_at(trial.curve, concurrency))
    return best
