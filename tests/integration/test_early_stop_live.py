"""Trials stopped after their screen on the real server: stored PRUNED with the reason, sooner than measured in full."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from factories import QUICK_LOAD, digits_study
from optuna.trial import TrialState

from tuner.config import parse_config
from tuner.measure import LoadEngine, Measured, Probe
from tuner.pool import Pool
from tuner.storage import Store
from tuner.study import StudyRunner
from tuner.workers import LocalPool
from tuner.workers._worker import Worker


def test_a_config_far_over_a_tiny_budget_stops_after_its_screen(tmp_path: Path, digits_onnx: Path) -> None:
    data = digits_study("screened", str(digits_onnx), n_trials=2, storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    data["search"] |= {"sampler": "grid", "space": {"max_batch_size": [1], "dynamic_batching": [False],
                                                     "instance_count": [1, 2]}}
    data["workers"] = {"backend": "local"}
    data["constraints"] = {"latency_p99_ms": {"max": 0.001}}  # no config answers in a microsecond
    # other test processes' CPU use must not veto the screen (a contaminated screen stops nothing); windows
    # of 1 s (screens of 250 ms) keep the measuring apart from the snapshots' waits, which a busy machine stretches
    data["load"] = QUICK_LOAD | {
        "engine": "builtin", "early_stop": {"enabled": True}, "contamination_cpu_pct": 10000, "measurement_window_ms": 1000,
    }
    cfg = parse_config(data, tmp_path)

    summary = StudyRunner(cfg, Store(cfg.storage)).run()

    full, pruned = summary.stored.trials
    assert full.is_default and full.state == TrialState.COMPLETE, "the baseline is measured in full"
    assert pruned.state == TrialState.PRUNED, pruned.fail_reason
    assert pruned.pruned_reason is not None
    assert "ms in the screening window" in pruned.pruned_reason and "the 0.001 ms budget" in pruned.pruned_reason
    assert pruned.metrics["latency_p99_ms"] > 2 * 0.001 and pruned.metrics["stable"] is False
    assert pruned.record is not None and [p.concurrency for p in pruned.record.points] == [2]
    assert "measure_s" not in pruned.timings_s
    assert pruned.timings_s["screen_s"] < full.timings_s["measure_s"]


def test_a_variant_over_the_accuracy_bound_stops_after_its_screen(tmp_path: Path, text_detection_onnx: Path) -> None:
    data = digits_study("inaccurate", str(text_detection_onnx), n_trials=2, storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    data["model"] = {"name": "text_detection", "path": str(text_detection_onnx), "validation_samples": 2}
    data["search"] |= {"sampler": "grid", "space": {"max_batch_size": [1], "dynamic_batching": [False],
                                                     "instance_count": [1], "precision": ["fp32", "fp16"]}}
    data["workers"] = {"backend": "local"}
    data["constraints"] = {"accuracy_drop": {"max": 0.05}}  # FP16 moves the detector's text map by about 0.15
    # [1, 2]: no latency budget and a rising sweep, so the screen's measurement judges nothing; the answers do
    data["load"] = QUICK_LOAD | {"engine": "builtin", "concurrency": [1, 2], "early_stop": {"enabled": True}}
    cfg = parse_config(data, tmp_path)

    summary = StudyRunner(cfg, Store(cfg.storage)).run()

    by_precision = {t.params["precision"]: t for t in summary.stored.trials}
    full, pruned = by_precision["fp32"], by_precision["fp16"]
    assert full.state == TrialState.COMPLETE and full.accuracy is not None and full.accuracy["accuracy_drop"] < 0.05
    assert pruned.state == TrialState.PRUNED, pruned.fail_reason
    assert pruned.pruned_reason is not None and "over the 0.05 bound" in pruned.pruned_reason
    assert pruned.metrics["accuracy_drop"] > 0.05 and pruned.constraints["accuracy_drop"] > 0
    assert pruned.record is not None and [p.concurrency for p in pruned.record.points] == [1]
    assert "measure_s" not in pruned.timings_s and "screen_s" in pruned.timings_s


class OneHiccup:
    """The real engine, but the p99 of its first screen is a thousand times what it measured: a stall that one
    short reading on a busy machine can hold."""

    def __init__(self, engine: LoadEngine) -> None:
        self.engine, self.screens = engine, 0

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured:
        return self.engine.measure(model, concurrency, probe)

    def screen(self, model: str, concurrency: int, probe: Probe) -> Measured:
        measured = self.engine.screen(model, concurrency, probe)
        self.screens += 1
        if self.screens > 1:
            return measured
        return dataclasses.replace(measured, point=dataclasses.replace(
            measured.point, latency_p99_ms=1000 * measured.point.latency_p99_ms))


class HiccupWorker(Worker):
    def _make_engine(self) -> LoadEngine:
        self.hiccup = OneHiccup(super()._make_engine())
        return self.hiccup  # type: ignore[return-value]


class HiccupRunner(StudyRunner):
    def open_pool(self) -> Pool:
        pool = LocalPool(self.worker_setup(0))
        pool.worker = HiccupWorker(self.worker_setup(0))
        self.worker = pool.worker
        return pool


def test_a_screen_that_reads_hopeless_once_is_screened_again_before_the_trial_stops(
    tmp_path: Path, digits_onnx: Path
) -> None:
    data = digits_study("hiccup", str(digits_onnx), n_trials=2, storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    data["search"] |= {"sampler": "grid", "space": {"max_batch_size": [1], "dynamic_batching": [False],
                                                     "instance_count": [1, 2]}}
    data["workers"] = {"backend": "local"}
    data["constraints"] = {"latency_p99_ms": {"max": 100}}  # the digits answer in a few ms; a thousand times that is not
    # the latency rule alone: under a parallel test run the throughput rule could stop it on its own
    data["load"] = QUICK_LOAD | {"engine": "builtin", "early_stop": {"enabled": True, "throughput_share": 0.01},
                                 "contamination_cpu_pct": 10000}
    cfg = parse_config(data, tmp_path)
    runner = HiccupRunner(cfg, Store(cfg.storage))

    default, trial = runner.run().stored.trials

    assert default.is_default and runner.worker.hiccup.screens == 2, "the hopeless reading was screened again"
    assert trial.state == TrialState.COMPLETE and trial.feasible, trial.pruned_reason
    assert "measure_s" in trial.timings_s and trial.metrics["latency_p99_ms"] < 100
