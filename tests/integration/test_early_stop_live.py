"""Trials stopped after their screen on the real server: stored PRUNED with the reason, sooner than measured in full."""

from __future__ import annotations

from pathlib import Path

from factories import QUICK_LOAD, digits_study
from optuna.trial import TrialState

from tuner.config import parse_config
from tuner.storage import Store
from tuner.study import StudyRunner


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
