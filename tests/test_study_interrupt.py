"""Ctrl-C in the search, in-process: the trial in flight is failed and its config queued for the next run.

The study loop, the sampler and SQLite are real; the pool is scripted and raises KeyboardInterrupt
as Python does on SIGINT (and as the CLI does on SIGTERM). That a real signal reaches a real
tuner, stops its server and exits 143 is tested in tests/integration/test_optimize.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from optuna.trial import TrialState
from scripted import ScriptedPool, ScriptedRunner

from tuner import interrupts
from tuner.config import StudyConfig, parse_config
from tuner.errors import LeaseLostError
from tuner.pool import Finished
from tuner.storage import ATTR_INTERRUPTED, Store, StudyLease, read_trial

if TYPE_CHECKING:
    from typing_extensions import Self

#: Throughput by instance count: one config clearly ahead, none re-measured (the budget is 0).
SCRIPT = {1: (50.0, 1.0), 2: (90.0, 1.0), 3: (100.0, 1.0), 4: (60.0, 1.0)}


def _cfg(tmp_path: Path, digits_onnx: Path, sampler: str) -> StudyConfig:
    return parse_config({
        "study": "interrupted",
        "storage": f"sqlite:///{tmp_path / 'tuner.db'}",
        "model": {"name": "digits_forest", "path": str(digits_onnx)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {
            "sampler": sampler, "n_trials": 4, "seed": 1,
            "space": {"instance_count": [1, 2, 3, 4], "max_batch_size": [1, 8], "dynamic_batching": False,
                      "max_queue_delay_us": 0},
        },
        "load": {"concurrency": [8], "remeasure": {"loads": 0}},
    }, tmp_path)


def test_ctrl_c_fails_the_trial_in_flight_and_the_next_run_measures_its_config(
    tmp_path: Path, digits_onnx: Path
) -> None:
    cfg = _cfg(tmp_path, digits_onnx, "tpe")
    interrupted = ScriptedRunner(cfg, ScriptedPool(SCRIPT, interrupt_at=2)).run()

    assert interrupted.interrupted
    trials = interrupted.study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.RUNNING not in states
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "interrupted" in failed[0].user_attrs["fail_reason"]
    assert failed[0].user_attrs[ATTR_INTERRUPTED]
    # The interrupted config waits to run again; the warm start's later configs are queued as the search asks.
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[-1].number == len(trials) - 1, "the interrupted config is queued again"
    assert waiting[-1].system_attrs["fixed_params"] == failed[0].params
    # as `tuner show` and the API read it: the config it waits to measure, not an empty one ("default")
    assert read_trial(waiting[-1]).params == failed[0].params

    pool = ScriptedPool(SCRIPT)
    resumed = ScriptedRunner(cfg, pool).run()

    assert not resumed.interrupted
    trials = resumed.study.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4, "the interrupted trial does not count"
    assert trials[waiting[-1].number].state == TrialState.COMPLETE
    assert trials[waiting[-1].number].params == failed[0].params
    assert len(pool.submitted) == 2, "the 2 trials measured before Ctrl-C are not measured again"


def test_a_trial_killed_before_its_config_was_whole_is_failed_and_not_queued_again(
    tmp_path: Path, digits_onnx: Path
) -> None:
    """A tuner killed between asking a trial and proposing all its knobs leaves it RUNNING with
    part of a config: nothing of it was measured, so the next run fails it and proposes afresh."""
    cfg = _cfg(tmp_path, digits_onnx, "tpe")
    first = ScriptedRunner(cfg, ScriptedPool(SCRIPT)).run(n_trials=2)
    half = first.study.ask()
    half.suggest_categorical("instance_count", [1, 2, 3, 4])  # killed before the other knobs

    resumed = ScriptedRunner(cfg, ScriptedPool(SCRIPT)).run()

    trials = resumed.study.get_trials()
    stale = trials[half.number]
    assert stale.state == TrialState.FAIL and stale.user_attrs[ATTR_INTERRUPTED]
    assert TrialState.WAITING not in [t.state for t in trials]
    later = [t for t in trials if t.number > half.number]
    assert not any(t.system_attrs.get("fixed_params") == stale.params for t in later), "the half config was queued"
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4


class _TakenOver(ScriptedPool):
    """Once ``at`` loads came back, a driver on another host takes the study's lease over, as one would
    whose clock saw this run's heartbeat stale; this run's next heartbeat learns it."""

    def __init__(self, lease: StudyLease, at: int) -> None:
        super().__init__(SCRIPT)
        self.lease, self.at = lease, at

    def collect(self, timeout_s: float) -> list[Finished]:
        finished = super().collect(timeout_s)
        if sum(s.done for s in self.status) == self.at:
            later = self.lease.clock() + 60
            other = StudyLease(self.lease.store, self.lease.study, host="node-b", pid=7,
                               clock=lambda: later, sleep=lambda seconds: None)
            other.acquire()
            assert not self.lease.renew()
        return finished


def test_a_run_whose_lease_was_taken_over_stops_without_writing_more(
    tmp_path: Path, digits_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(tmp_path, digits_onnx, "tpe")
    store = Store(cfg.storage)
    with StudyLease(store, cfg.study) as lease:
        pool = _TakenOver(lease, at=2)
        runner = ScriptedRunner(cfg, pool)
        runner.lease = lease
        with pytest.raises(LeaseLostError, match="another tuner took over"):
            runner.run()

    trials = runner.study.get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 1, "the load that came back after is not stored"
    assert len(pool.submitted) == 2, "no trial started after the lease was lost"
    running = [t for t in trials if t.state == TrialState.RUNNING]
    assert len(running) == 1, "the trial in flight is left to the new driver to run again"

    # the driver that takes over says so where a run without --verbose shows it: a warning
    with caplog.at_level(logging.WARNING, logger="tuner.study._trials"):
        resumed = ScriptedRunner(cfg, ScriptedPool(SCRIPT)).run()
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tuner.study._trials"] == [
        (logging.WARNING, f"trials [{running[0].number}] were running when the tuner stopped; they run again")
    ]
    assert resumed.study.get_trials()[running[0].number].state == TrialState.FAIL


def test_a_study_run_again_with_nothing_left_opens_no_pool(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, "tpe")
    done = ScriptedRunner(cfg, ScriptedPool(SCRIPT)).run()
    assert len(done.study.get_trials()) == 4

    class Unopened(ScriptedRunner):
        def open_pool(self):  # type: ignore[override]
            raise AssertionError("a study with nothing left to measure started its workers")

    assert not done.nothing_left
    again = Unopened(cfg, ScriptedPool(SCRIPT)).run()
    assert len(again.study.get_trials()) == 4 and again.recommendation is not None
    assert again.nothing_left, "the summary says so, for the command to tell"
    more = ScriptedRunner(cfg, pool := ScriptedPool(SCRIPT)).run(n_trials=5)  # a larger budget: it measures
    assert len(pool.submitted) == 1 and len(more.study.get_trials()) == 5 and not more.nothing_left


class _LostInterruptPool(ScriptedPool):
    """A Ctrl-C or SIGTERM whose KeyboardInterrupt Python lost (raised inside a weakref callback, printed as
    "Exception ignored"): the handler recorded the stop, and ``collect`` returns as if nothing had come."""

    def collect(self, timeout_s: float) -> list[Finished]:
        if sum(s.done for s in self.status) == 2:
            interrupts.request()
        return super().collect(timeout_s)


def test_a_stop_whose_keyboard_interrupt_was_lost_still_stops_the_study(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _cfg(tmp_path, digits_onnx, "tpe")
    try:
        summary = ScriptedRunner(cfg, _LostInterruptPool(SCRIPT)).run()
    finally:
        requested_after = interrupts._requested.is_set()
        interrupts.clear()

    assert summary.interrupted, "the study ran on as if no signal had come"
    states = [t.state for t in summary.study.get_trials()]
    # the load that came back with the signal is kept; no trial starts after it
    assert states.count(TrialState.COMPLETE) == 3 and TrialState.RUNNING not in states
    assert not requested_after, "the stop was carried out once, and not left to stop the next run"


class _StoppedWhileStartingPool(ScriptedPool):
    """Ctrl-C or SIGTERM while the workers start (Ray coming up, a server loading): before any trial."""

    def __enter__(self) -> Self:
        raise KeyboardInterrupt


def test_a_stop_while_the_workers_start_ends_the_run_as_interrupted_with_the_study_kept(
    tmp_path: Path, digits_onnx: Path
) -> None:
    """The run ends as any stopped run does (its summary, then "interrupted: the study is stored; run the same
    command to continue it"), not with a bare KeyboardInterrupt that the CLI can only call "interrupted"."""
    cfg = _cfg(tmp_path, digits_onnx, "bo")
    summary = ScriptedRunner(cfg, _StoppedWhileStartingPool(SCRIPT)).run()

    assert summary.interrupted
    states = [t.state for t in summary.study.get_trials()]
    assert TrialState.FAIL not in states and TrialState.RUNNING not in states, "no trial had started"
    assert cfg.study in Store(cfg.storage).study_names()
