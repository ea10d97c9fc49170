"""Open studies kept between requests, and what their COMPLETE trials say (api.views shows them).

Optuna's study object keeps finished trials in memory and asks the database only for trials that
are new or still running, so keeping one per study makes each read after the first cheap, also
while the study runs. Finished trials never change, so what the COMPLETE trials say (each typed
through tuner.storage once, the configs and the recommendation judged by tuner.study, the
measured curves) is worked out once per new COMPLETE trial (a ``Snapshot``) instead of once per
request. A study is looked up by name on every request and its
kept object used only while the id matches, so a study deleted and created again is never stale.

With ``refresh_s`` > 0, a study's name and trials are read from the database at most that often
and requests in between are answered from memory: reads may be that much behind a running study,
and a busy server spends its time answering instead of asking the database again.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import StudyNotFoundError
from tuner.reports import Curves
from tuner.storage import Store, StoredTrial, StudyInfo, no_trial, read_info, read_trial, read_trials
from tuner.study import ConfigResult, Recommendation, by_number, config_results, pareto_front, recommend

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """What a study's COMPLETE trials say; it holds until another trial completes.

    Trials are kept by number: numbers are unique within the one study an ``OpenStudy`` holds.

    Attributes:
        info: What the study stores about itself (directions, metric names, constraints).
        complete: The COMPLETE trials, typed and with the tuner's rows, by number.
        results: Every measured config with its loads (tuner.study), in the order first measured.
        front: The Pareto front over configs, by the medians of their loads.
        recommendation: The config to deploy, if any is feasible.
        curves: Every config's median points by concurrency, for questions under limits.
        by_number: Each config under the number of every load of it.
        memo: Answers built from it (see ``once``).
    """

    info: StudyInfo
    complete: dict[int, StoredTrial]
    results: list[ConfigResult]
    front: list[ConfigResult]
    recommendation: Recommendation | None
    curves: Curves
    by_number: Mapping[int, ConfigResult]
    memo: dict[Hashable, Any] = field(default_factory=dict, compare=False, repr=False)

    def once(self, key: Hashable, build: Callable[[], T]) -> T:
        """What ``build`` makes of this snapshot, built on the first request that asks.

        An answer is the same until the next snapshot: the medians of a study of 1,000 trials'
        front took ~10 ms a request. Two requests may build it at once; both get equal answers.
        """
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]

    def typed(self, trial: FrozenTrial) -> StoredTrial:
        """The trial typed: a COMPLETE one from here (with its rows), others read now (they still change)."""
        kept = self.complete.get(trial.number) if trial.state == TrialState.COMPLETE else None
        return kept if kept is not None else read_trial(trial)


class OpenStudy:
    """A study kept open between requests, with the snapshot of its COMPLETE trials.

    Args:
        study: The study.
        study_id: Its id in the storage.
        refresh_s: Read its trials again after this many seconds at the earliest (0: always).
    """

    def __init__(self, study: optuna.Study, study_id: int, refresh_s: float = 0.0) -> None:
        self.study = study
        self.study_id = study_id
        self.refresh_s = refresh_s
        self.checked_at = time.monotonic()
        self._snapshot: Snapshot | None = None
        self._trials: list[FrozenTrial] | None = None
        self._read_at = 0.0
        self._reading = threading.Lock()
        self.checking = threading.Lock()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.study.study_name

    def trials(self) -> list[FrozenTrial]:
        """The study's trials by number, not copied: read them, never change them."""
        trials = self._trials
        if trials is None or self.refresh_s == 0:
            return self._read_trials()
        if time.monotonic() - self._read_at < self.refresh_s:
            return trials
        # One request reads the database; the others meanwhile answer from the trials read before.
        if not self._reading.acquire(blocking=False):
            return trials
        try:
            return self._read_trials()
        finally:
            self._reading.release()

    def _read_trials(self) -> list[FrozenTrial]:
        """Reads the trials from the database.

        Raises:
            StudyNotFoundError: the study was deleted since it was opened (Optuna says KeyError).
        """
        now = time.monotonic()
        try:
            trials = self.study.get_trials(deepcopy=False)
        except KeyError as exc:
            raise StudyNotFoundError(f"study {self.name!r} was deleted") from exc
        self._trials, self._read_at = trials, now
        return trials

    def snapshot(self, store: Store, trials: Sequence[FrozenTrial] | None = None) -> Snapshot:
        """The snapshot of the COMPLETE trials among ``trials`` (default: the study's now)."""
        trials = self.trials() if trials is None else trials
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        with self._lock:
            old = self._snapshot
            # COMPLETE is final: the same count is the same set of trials.
            if old is not None and len(old.complete) >= len(complete):
                return old
            snapshot = _build_snapshot(self.study, store, complete, old)
            self._snapshot = snapshot
        _settle_memory()
        return snapshot


def _build_snapshot(
    study: optuna.Study, store: Store, complete: Sequence[FrozenTrial], old: Snapshot | None
) -> Snapshot:
    info = read_info(study)
    typed = dict(old.complete) if old else {}
    new = [t for t in complete if t.number not in typed]
    for trial in read_trials(new, store):  # one query for the rows of every new trial
        typed[trial.number] = trial
    typed = dict(sorted(typed.items()))
    results = _results(typed, new, info, old)
    return Snapshot(
        info=info,
        complete=typed,
        results=results,
        front=pareto_front(results, info.directions),
        recommendation=recommend(results, info),
        curves=Curves(results, info.bounds),
        by_number=by_number(results),
    )


def _results(
    typed: Mapping[int, StoredTrial], new: Sequence[FrozenTrial], info: StudyInfo, old: Snapshot | None
) -> list[ConfigResult]:
    """Every config's result, judging again only the configs the new trials measured.

    A study of 1,000 trials gains one trial at a time: the other configs' loads are unchanged.
    """
    if old is None or old.info != info:
        return config_results(list(typed.values()), info)
    touched = {typed[t.number].config_key for t in new}
    loads = [t for t in typed.values() if t.config_key in touched]
    kept = {r.key: r for r in old.results if r.key not in touched}
    kept.update((r.key, r) for r in config_results(loads, info))
    return sorted(kept.values(), key=lambda r: r.first.number)


def _settle_memory() -> None:
    """Takes the objects alive now (open studies, their trials, snapshots) out of the collector's view.

    They live as long as the server, and a full collection walks every one of them: with a study
    of 1,000 trials that paused every request in flight for ~80 ms every few seconds. Collecting
    first leaves no garbage behind in the frozen set; later collections walk only newer objects.
    """
    gc.collect()
    gc.freeze()


class StudyCache:
    """The open studies, by name, opened on first use.

    Args:
        store: The storage the studies live in.
        refresh_s: Look a name up (and read a study's trials) again after this many seconds at
            the earliest; 0 reads the database on every request.
    """

    def __init__(self, store: Store, refresh_s: float = 0.0) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._open: dict[str, OpenStudy] = {}

    def get(self, name: str) -> OpenStudy:
        """The study of that name.

        Raises:
            StudyNotFoundError: there is none.
        """
        with self._lock:
            kept = self._open.get(name)
        if kept is not None and self._refresh_s > 0:
            if time.monotonic() - kept.checked_at < self._refresh_s:
                return kept
            if not kept.checking.acquire(blocking=False):
                return kept  # another request is looking the name up
            try:
                return self._check(name, kept)
            finally:
                kept.checking.release()
        return self._check(name, kept)

    def _check(self, name: str, kept: OpenStudy | None) -> OpenStudy:
        now = time.monotonic()
        study_id = self._store.study_id(name)
        if kept is not None and kept.study_id == study_id:
            kept.checked_at = now
            return kept
        try:
            study = self._store.load_study(name)
        except StudyNotFoundError:
            raise StudyNotFoundError(f"no study {name!r}") from None
        opened = OpenStudy(study, study_id, self._refresh_s)
        with self._lock:
            self._open[name] = opened
        return opened

    def forget(self, name: str) -> None:
        with self._lock:
            self._open.pop(name, None)


def trial_of(trials: Sequence[FrozenTrial], name: str, number: int) -> FrozenTrial:
    """The trial of that number.

    Raises:
        StudyNotFoundError: the study has no such trial.
    """
    if 0 <= number < len(trials) and trials[number].number == number:
        return trials[number]
    for trial in trials:  # numbers are 0..n-1; this only runs if Optuna ever changes that
        if trial.number == number:
            return trial
    raise StudyNotFoundError(no_trial(name, number, len(trials)))
