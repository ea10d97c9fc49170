"""A full disk stops the study instead of spending its budget on FAIL trials.

Filling the disk is not an option on a shared machine: the worker's load engine is replaced by
one whose report cannot be written (OSError ENOSPC, as perf_analyzer's CSV or the model
repository would raise); everything else is real (Triton, SQLite, the study loop).
"""

from __future__ import annotations

import errno
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_optimize import servers_under, study_file

from tuner.config import load_config
from tuner.errors import DiskFullError
from tuner.measure import Measured, Probe
from tuner.pool import Pool
from tuner.storage import ATTR_INTERRUPTED, Store
from tuner.study import StudyRunner
from tuner.study._trials import counted_trials
from tuner.trial import Failure, Screen, TrialSpec
from tuner.workers import LocalPool, WorkerSetup
from tuner.workers._worker import Worker


class FullDisk:
    """A load engine whose report lands on a full disk."""

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured:
        raise OSError(errno.ENOSPC, "No space left on device", f"perf_{model}_c{concurrency}.csv")


class DiskFillsWorker(Worker):
    """A real worker whose disk is full from its trial number ``full_from`` (counted from 0) on."""

    def __init__(self, setup: WorkerSetup, full_from: int) -> None:
        super().__init__(setup)
        self.full_from = full_from
        self.trials = 0

    def evaluate(self, spec: TrialSpec, screen: Screen | None = None):
        if self.trials >= self.full_from:
            self._engine = FullDisk()
        self.trials += 1
        return super().evaluate(spec, screen)


class DiskFillsRunner(StudyRunner):
    def open_pool(self) -> Pool:
        pool = LocalPool(self.worker_setup(0))
        pool.worker = DiskFillsWorker(self.worker_setup(0), full_from=1)
        return pool


def test_a_full_disk_stops_the_study_and_the_trial_runs_again(tmp_path: Path, digits_onnx: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the study file's sqlite:///tuner.db
    cfg = load_config(study_file(tmp_path, digits_onnx, name="full", workers={"backend": "local"}))
    with pytest.raises(DiskFullError, match="disk full: .*No space left on device") as stopped:
        DiskFillsRunner(cfg, Store(cfg.storage)).run()
    assert "run the same command" in str(stopped.value)
    assert not servers_under(tmp_path), "the server outlived the stopped study"

    study = optuna.load_study(study_name="full", storage=cfg.storage)
    states = [t.state for t in study.trials]
    assert states[:2] == [TrialState.COMPLETE, TrialState.FAIL]
    assert TrialState.RUNNING not in states
    full = study.trials[1]
    assert full.user_attrs[ATTR_INTERRUPTED] and "disk full" in full.user_attrs["fail_reason"]
    assert counted_trials(study) == 1, "the full disk spent none of the budget"
    queued = study.trials[-1]
    assert queued.state == TrialState.WAITING and queued.system_attrs["fixed_params"] == full.params

    StudyRunner(cfg, Store(cfg.storage)).run()  # space freed: the same study goes on
    study = optuna.load_study(study_name="full", storage=cfg.storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and any(t.params == full.params for t in complete)


def test_a_full_disk_is_its_own_kind_of_failure(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = load_config(study_file(tmp_path, digits_onnx, name="kind", workers={"backend": "local"}))
    runner = StudyRunner(cfg, Store(f"sqlite:///{tmp_path / 'kind.db'}"))
    spec = TrialSpec(max_batch_size=8, dynamic_batching=False, max_queue_delay_us=0, instance_count=1)
    with DiskFillsWorker(runner.worker_setup(0), full_from=0) as worker:
        outcome = worker.evaluate(spec)
    assert outcome.failure_kind == Failure.DISK_FULL and "No space left" in (outcome.error or "")
