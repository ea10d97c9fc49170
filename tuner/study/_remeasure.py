"""Which config to load afresh next, after the search, so that the recommendation holds up.

    budget = remeasure_budget(settings, n_trials, stored)
    for config in contenders(stored, settings.max_loads_per_config, busy=in_flight):
        ...                                   # measure it again

A study's search measures each config once, and one load can be lucky by 10% or more. The loads
left to spend on confirming (``load.remeasure``) go where they can still change the answer: to
the contenders, the leader and every config whose interval overlaps it (``Recommendation.contenders``).
The contender with the fewest loads goes first (of equals, the better median), as its interval
is the widest; the verdict is recomputed after every load, since a load can widen or narrow the
intervals and so change who is tied. A config that has had ``max_loads_per_config`` loads (its
failed re-measurements included) is not loaded again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from optuna.trial import TrialState

from tuner.config import Remeasure
from tuner.storage import StoredStudy, StoredTrial
from tuner.study._verdict import ConfigResult, config_results, recommend


@dataclass(frozen=True)
class Contender:
    """A config that may take another load.

    Attributes:
        config: The config and its loads so far.
        tries: Its loads, and its re-measurements that failed.
        room: Loads it may still take (``max_loads_per_config`` less ``tries``).
    """

    config: ConfigResult
    tries: int
    room: int

    @property
    def source(self) -> StoredTrial:
        """The trial a re-measurement of the config names (``remeasure_of``): its first load."""
        return self.config.first


def remeasure_budget(settings: Remeasure, n_trials: int | None, stored: StoredStudy) -> int:
    """Fresh loads this run may still start: the study's budget less what earlier runs spent.

    The budget is a share of the study's trials: of ``n_trials``, or of the trials counted where
    the study has no trial budget or its sampler ran out of configs before it.
    """
    counted = stored.counted()
    trials = counted if n_trials is None else min(n_trials, counted)
    return max(0, settings.budget(trials) - spent(stored))


def spent(stored: StoredStudy) -> int:
    """Re-measurements that finished (complete or failed), the interrupted ones left out."""
    return sum(1 for t in stored.trials if t.remeasure_of is not None and _tried(t))


def contenders(stored: StoredStudy, max_loads: int, busy: Collection[str] = ()) -> list[Contender]:
    """The configs to load next, best first (see the module doc); none where no config is feasible.

    Args:
        stored: The study so far (without the tuner's rows: values and attributes suffice).
        max_loads: Loads of one config at most.
        busy: Keys of the configs being measured now: left out, so that idle workers take others.
    """
    rec = recommend(config_results(stored.trials, stored.info), stored.info)
    if rec is None:
        return []
    failed = _failed_remeasures(stored)
    found = []
    for config in rec.contenders:
        tries = len(config.loads) + failed.get(config.key, 0)
        if tries < max_loads and config.key not in busy:
            found.append(Contender(config, tries, max_loads - tries))
    sign = -1.0 if stored.info.maximize else 1.0
    return sorted(found, key=lambda c: (c.tries, sign * c.config.values[0], c.config.first.number))


def room(stored: StoredStudy, max_loads: int, busy: Collection[str] = ()) -> int:
    """Loads the configs tied for the lead may still take, those being measured now left out."""
    return sum(c.room for c in contenders(stored, max_loads, busy))


@dataclass
class Confirming:
    """The re-measuring phase of one run of a study, for its progress.

    Attributes:
        budget: Fresh loads the run may start (``remeasure_budget``).
        max_loads: Loads of one config at most.
        planned: Loads the phase will have finished (see ``replan``).
        started: Loads started.
        finished: Loads finished (complete or failed).
    """

    budget: int
    max_loads: int
    planned: int = 0
    started: int = 0
    finished: int = 0

    #: The phase's name on the progress bar, whose count is of the loads finished and planned.
    phase = "confirming on fresh loads"

    def replan(self, stored: StoredStudy) -> None:
        """Loads the phase will have finished: those done and those the contenders may still take,
        within the budget, and never fewer than started."""
        self.planned = max(self.started, min(self.budget, self.finished + room(stored, self.max_loads)))


def _tried(trial: StoredTrial) -> bool:
    return trial.state in (TrialState.COMPLETE, TrialState.FAIL) and not trial.interrupted


def _failed_remeasures(stored: StoredStudy) -> dict[str, int]:
    failed: dict[str, int] = {}
    for t in stored.trials:
        if t.remeasure_of is not None and t.state == TrialState.FAIL and not t.interrupted:
            failed[t.config_key] = failed.get(t.config_key, 0) + 1
    return failed
