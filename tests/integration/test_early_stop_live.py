"""A trial stopped after its screen on the real server: stored PRUNED with its reason, sooner than measured in full."""

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
    # other test processes' CPU use must not veto the screen (a contaminated screen stops nothing)
    data["load"] = QUICK_LOAD | {"engine": "builtin", "early_stop": {"enabled": True}, "contamination_cpu_pct": 10000}
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
