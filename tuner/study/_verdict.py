"""What a study's loads say about its configs: each config's result, the front, the recommendation.

    results = config_results(stored.trials, stored.info)
    front = pareto_front(results, stored.info.directions)
    rec = recommend(results, stored.info)

The unit of a result is the config, not the load: a config measured three times (once by the
search, twice more to confirm it) is one ``ConfigResult`` with three loads, judged by their
median. ``recommend`` is the one rule every reader uses (the CLI, the API, the report, the export,
``tuner verify``):

1. Among the feasible configs (feasible by the median of their loads), the best median of the
   first objective is the leader.
2. Every feasible config whose median lies in the leader's interval ties with it: the leader's loads
   cannot tell the two apart. A config's own interval does not widen the tie: a config measured
   with wide windows, or once, would win a tie for being noisy, and it could then be recommended at a
   median below every value the leader was measured at (and below the default config's).
3. Of the tied configs the cheapest wins (``cost``: fewer instances, then fewer threads, then FP32
   over reduced precision), and of equally cheap ones the best median: the leader where none is
   cheaper. The batcher, the max batch size and the queue delay cost no resources (their effect on
   latency is measured), so giving up throughput for one of them would save nothing.

A config's interval is the range of its loads' values, each widened by its own window spread
(where the first objective is throughput, whose windows the load generator reports): with n loads
the median lies in the range of n loads with probability 1 - 2 * 0.5^n (75% for 3, 94% for 5), and
a single load's interval is its windows' spread. The configs whose intervals overlap the leader's are
its ``contenders``: another load of one of them may change the answer (tuner.study._remeasure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.trial import TrialState

from tuner.storage import Bounds, ConstraintMiss, StoredTrial, StudyInfo, misses

#: Precision by cost: full precision risks nothing, reduced precision risks accuracy.
_PRECISION_COST = {"fp32": 0, "fp16": 1, "int8": 2}


@dataclass(frozen=True)
class ConfigResult:
    """One config and every fresh load of it.

    Attributes:
        key: The config's canonical text (``StoredTrial.config_key``).
        loads: The trials that measured it, by number (copies of a result are not loads).
        values: Per objective, the median over the loads.
        constraints: Per constraint, the median over the loads (<= 0 where it holds).
        interval: Where the first objective's median lies (see the module doc): (low, high).
    """

    key: str
    loads: tuple[StoredTrial, ...]
    values: tuple[float, ...]
    constraints: dict[str, float]
    interval: tuple[float, float]

    @property
    def number(self) -> int:
        """The number of the trial that stands for the config (``representative``)."""
        return self.representative.number

    @property
    def first(self) -> StoredTrial:
        """The load that measured the config first."""
        return self.loads[0]

    @property
    def representative(self) -> StoredTrial:
        """The load nearest the median of the first objective (the lower one of two); its point,
        curve and server windows describe the config in charts and explanations."""
        ordered = sorted(self.loads, key=lambda t: (t.values or (0.0,))[0])
        return ordered[(len(ordered) - 1) // 2]

    @property
    def feasible(self) -> bool:
        return all(v <= 0.0 for v in self.constraints.values())

    @property
    def params(self) -> dict[str, Any]:
        return self.first.params

    @property
    def is_default(self) -> bool:
        return any(t.is_default for t in self.loads)

    @property
    def doubts(self) -> tuple[str, ...]:
        """What every load's measurement was flagged with: ``unstable`` (the load generator's windows never
        agreed), ``contaminated`` (other processes took the CPU while it ran). A config one load of which
        measured cleanly has none: its median leans on that load."""
        flags = (
            ("unstable", lambda m: m.get("stable") is False),
            ("contaminated", lambda m: bool(m.get("contaminated"))),
        )
        return tuple(name for name, flagged in flags if all(flagged(t.metrics) for t in self.loads))

    @property
    def spread_pct(self) -> float:
        """(max - min) / median of the first objective over the loads, in percent."""
        firsts = [t.values[0] for t in self.loads if t.values]
        median = self.values[0]
        return 100.0 * (max(firsts) - min(firsts)) / abs(median) if median else 0.0

    def metric(self, name: str) -> float | None:
        """The median of a metric over the loads."""
        values = [t.metrics[name] for t in self.loads if isinstance(t.metrics.get(name), (int, float))]
        return float(np.median(values)) if values else None

    def median_metrics(self) -> dict[str, float]:
        """Every numeric metric's median over the loads."""
        names = {
            k
            for t in self.loads
            for k, v in t.metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return {name: value for name in sorted(names) if (value := self.metric(name)) is not None}

    def failed_constraints(self, bounds: Bounds) -> list[ConstraintMiss]:
        """The constraints the config's medians break, and by how much."""
        return misses(self.median_metrics(), bounds)

    def cost(self) -> tuple[float, ...]:
        """What running the config costs, for breaking ties: lower is cheaper (see the module doc)."""
        knobs = _cost_knobs(self.first.spec)
        return (
            float(knobs["instance_count"]),
            float(knobs["cpu_threads"]),
            float(_PRECISION_COST.get(str(knobs["precision"]), 3)),
        )


def _cost_knobs(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs a config's cost is read from; a pipeline's (``steps``) summed over its composing models
    (its most costly precision)."""
    steps = [dict(values) for _, values in spec.get("steps") or []]
    if not steps:
        return {
            "instance_count": spec.get("instance_count", 1),
            "cpu_threads": spec.get("cpu_threads", 1),
            "precision": spec.get("precision", "fp32"),
        }
    each = [_cost_knobs(step) for step in steps]
    summed = {k: sum(knobs[k] for knobs in each) for k in each[0] if k != "precision"}
    return summed | {"precision": max((k["precision"] for k in each), key=lambda p: _PRECISION_COST.get(p, 3))}


def config_results(trials: Sequence[StoredTrial], info: StudyInfo | None = None) -> list[ConfigResult]:
    """Every config with at least one load, in the order first measured.

    ``info``: the study, whose first objective decides whether window spreads widen the interval.
    """
    groups: dict[str, list[StoredTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.is_load:
            groups.setdefault(trial.config_key, []).append(trial)
    first_metric = info.metric_names[0] if info and info.metric_names else None
    return [_result(key, tuple(loads), first_metric) for key, loads in groups.items()]


def _result(key: str, loads: tuple[StoredTrial, ...], first_metric: str | None) -> ConfigResult:
    values = np.array([t.values for t in loads], dtype=float)
    names = sorted({name for t in loads for name in t.constraints})
    constraints = {
        name: float(np.median([t.constraints[name] for t in loads if name in t.constraints])) for name in names
    }
    lows, highs = [], []
    for trial, value in zip(loads, values[:, 0]):
        half = 0.0
        if first_metric == "throughput":
            half = abs(value) * float(trial.metrics.get("throughput_spread_pct", 0.0)) / 200.0
        lows.append(value - half)
        highs.append(value + half)
    return ConfigResult(
        key=key,
        loads=loads,
        values=tuple(float(v) for v in np.median(values, axis=0)),
        constraints=constraints,
        interval=(float(min(lows)), float(max(highs))),
    )


def pareto_front(results: Sequence[ConfigResult], directions: Sequence[str]) -> list[ConfigResult]:
    """The feasible configs no other feasible config dominates (by their medians), in the order given."""
    candidates = [r for r in results if r.feasible]
    if not candidates:
        return []
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    loss = np.array([r.values for r in candidates], dtype=float) * signs
    keep = non_dominated(loss)
    return [r for r, kept in zip(candidates, keep) if kept]


def non_dominated(loss: np.ndarray) -> np.ndarray:
    """Which rows no other row dominates (all <= and one <), minimizing every column.

    Rows with equal values are all on the front or all off it, as in Optuna.
    """
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)  # sorted lexicographically
    if unique.shape[1] == 1:
        on_front = unique[:, 0] == unique[0, 0]
    elif unique.shape[1] == 2:
        # Rows before a row have a lower or equal first value; it is dominated iff one has a
        # second value at most its own.
        before = np.minimum.accumulate(unique[:-1, 1])
        on_front = np.concatenate([[True], unique[1:, 1] < before])
    else:
        on_front = np.ones(len(unique), dtype=bool)
        for i, row in enumerate(unique):
            earlier = unique[:i][on_front[:i]]  # a dominator comes earlier in lexicographic order
            on_front[i] = not np.any(np.all(earlier <= row, axis=1))
    return on_front[inverse.reshape(-1)]


@dataclass(frozen=True)
class Recommendation:
    """The config to deploy, and why.

    Attributes:
        config: The recommended config.
        leader: The config with the best median (the same as ``config`` unless a tie went to a cheaper one).
        tied: The configs whose medians lie in the leader's interval, the leader and ``config`` included.
        contenders: The configs whose intervals overlap the leader's, ``tied`` included: more loads of them
            may change the answer.
        reason: What the choice rests on, in a sentence or two.
    """

    config: ConfigResult
    leader: ConfigResult
    tied: tuple[ConfigResult, ...]
    contenders: tuple[ConfigResult, ...]
    reason: str

    @property
    def number(self) -> int:
        return self.config.number


def recommend(results: Sequence[ConfigResult], info: StudyInfo) -> Recommendation | None:
    """The config to deploy (see the module doc), or None where no config is feasible."""
    feasible = [r for r in results if r.feasible]
    if not feasible:
        return None
    sign = 1.0 if info.maximize else -1.0
    leader = max(feasible, key=lambda r: (sign * r.values[0], -r.first.number))
    low, high = leader.interval
    contenders = [r for r in feasible if r.interval[0] <= high and r.interval[1] >= low]
    tied = [r for r in contenders if low <= r.values[0] <= high]
    chosen = min(tied, key=lambda r: (r.cost(), -sign * r.values[0], r.first.number))
    return Recommendation(chosen, leader, tuple(tied), tuple(contenders), _reason(chosen, leader, tied, info))


def ranked(results: Sequence[ConfigResult], info: StudyInfo) -> list[ConfigResult]:
    """Every config best first, as its own study judges it: the feasible ones first, each part by
    the median of the first objective (the first measured first where equal)."""
    sign = 1.0 if info.maximize else -1.0
    return sorted(results, key=lambda r: (not r.feasible, -sign * r.values[0], r.first.number))


def _reason(chosen: ConfigResult, leader: ConfigResult, tied: Sequence[ConfigResult], info: StudyInfo) -> str:
    metric = info.metric_names[0] if info.metric_names else "the first objective"
    loads = len(chosen.loads)
    low, high = chosen.interval
    text = (
        f"trial {chosen.number}: the best feasible median {metric} {chosen.values[0]:.4g} "
        f"over {loads} load{'s' if loads != 1 else ''} (interval {low:.4g}-{high:.4g})"
    )
    if chosen is leader:
        others = [r for r in tied if r is not chosen]
        if others:
            numbers = ", ".join(str(n) for n in sorted(r.number for r in others))
            text += f"; it ties with trial{'s' if len(others) > 1 else ''} {numbers}, none of them cheaper"
        return text
    text = (
        f"trial {chosen.number}: ties with trial {leader.number} (median {metric} {leader.values[0]:.4g}, "
        f"interval {leader.interval[0]:.4g}-{leader.interval[1]:.4g}) at {chosen.values[0]:.4g} "
        f"(interval {low:.4g}-{high:.4g}), and is the cheaper config ({cheaper_text(chosen, leader)})"
    )
    # what the cheaper config gives up on the other objectives, which the tie does not weigh
    worse = [
        f"{name} {mine:.4g} against {theirs:.4g}"
        for name, direction, mine, theirs in zip(
            info.metric_names[1:], info.directions[1:], chosen.values[1:], leader.values[1:]
        )
        if (mine < theirs if direction == "maximize" else mine > theirs)
    ]
    return text + (f"; its median {', '.join(worse)}" if worse else "")


def cheaper_text(cheap: ConfigResult, other: ConfigResult) -> str:
    """Where ``cheap`` costs less than ``other``: ``instances 1 instead of 2``; a precision says what it saves."""
    names = ("instances", "threads", "precision")
    if cheap.first.spec.get("steps"):
        names = ("instances in all", "threads in all", "precision")

    def shown(spec: Mapping[str, Any]) -> tuple[Any, ...]:
        knobs = _cost_knobs(spec)
        return tuple(knobs[k] for k in ("instance_count", "cpu_threads", "precision"))

    mine, theirs = shown(cheap.first.spec), shown(other.first.spec)
    for name, a, b, x, y in zip(names, mine, theirs, cheap.cost(), other.cost()):
        if x != y:
            saves = ", less accuracy at risk" if name == "precision" else ""
            return f"{name} {a} instead of {b}{saves}"
    return "as cheap"


def default_result(results: Sequence[ConfigResult]) -> ConfigResult | None:
    """The model's default config, where measured."""
    return next((r for r in results if r.is_default), None)


def gain(a: ConfigResult, b: ConfigResult, metric: str) -> float | None:
    """a / b of a metric's medians, or None where either lacks it."""
    x, y = a.metric(metric), b.metric(metric)
    return x / y if x is not None and y else None


def baseline_doubt(default: ConfigResult) -> str:
    """What to say of a gain over a default config whose every load was flagged (``ConfigResult.doubts``)."""
    loads = "its load was" if len(default.loads) == 1 else f"its {len(default.loads)} loads were"
    return (
        f"the gain is doubtful: {loads} {' and '.join(default.doubts)}; "
        f"`tuner verify --trial {default.number}` measures the default config again on a fresh server"
    )


@dataclass(frozen=True)
class NearestMiss:
    """The reading that came nearest to a bound no config held.

    Attributes:
        number: Its trial (a config's representative load, or a trial stopped after its screen).
        miss: The bound it broke, and by how much.
        screened: Read by a trial's screen, where the trial stopped, not by the median of a config's loads.
    """

    number: int
    miss: ConstraintMiss
    screened: bool = False

    def text(self) -> str:
        """``the nearest, trial 4's screen: latency_p99_ms 3.84 > max 0.05 (+7580%)``."""
        screen = "'s screen" if self.screened else ""
        return f"the nearest, trial {self.number}{screen}: {self.miss.text()}"


def nearest_misses(
    results: Sequence[ConfigResult], bounds: Bounds, screened: Sequence[StoredTrial] = ()
) -> list[NearestMiss]:
    """For each constraint that no config held by its medians, the reading that came nearest to it and its
    miss: how far that bound would have to move for the study to have a feasible config. The trials stopped
    after their screen (``screened``: their PRUNED ones are read) count by their screen's reading: far over a
    budget is why most of them stopped, but one may have come nearer than any config measured in full, and one
    that held the bound (and stopped for its answers, say) shows that the bound is not what no config met."""
    readings = [(r.number, r.median_metrics(), False) for r in results]
    readings += [(t.number, t.metrics, True) for t in screened if t.pruned]
    nearest = []
    for metric, bound in bounds.items():
        judged = [(n, misses(m, {metric: bound}), screen) for n, m, screen in readings if metric in m]
        if judged and all(found for _, found, _ in judged):  # else some config held it, in full or in its screen
            missed = [NearestMiss(n, found[0], screen) for n, found, screen in judged]
            nearest.append(min(missed, key=lambda near: (near.miss.excess, near.screened)))
    return nearest


def by_number(results: Sequence[ConfigResult]) -> Mapping[int, ConfigResult]:
    """Each config under the number of every load of it."""
    return {t.number: r for r in results for t in r.loads}


def nothing_measured(states: Sequence[TrialState], reasons: str = "above") -> str | None:
    """What to say of a study none of whose trials (their ``states``) measured a config, even in part (a
    screen): its constraints are not to blame. ``reasons``: where the failed trials' reasons are shown.
    None where some trial measured one."""
    if any(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states):
        return None
    if TrialState.FAIL in states:
        return f"no config could be measured: every trial failed (their reasons are {reasons})"
    return "no config has been measured yet"
