"""Transfer between studies (``search.warm_start: {from: [...]}``): a new study starts from the best
configs of earlier ones in the same storage, moved into its own space.

The study loop, the samplers and SQLite are the real ones; the workers are a scripted pool (what
is tested is which configs a study starts from, not what a server measures).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
import pytest
from scripted import Script, ScriptedPool, ScriptedRunner

from tuner.config import StudyConfig, parse_config
from tuner.errors import ConfigError, ExitCode
from tuner.storage import Store, read_study
from tuner.study import plan_study

#: Throughput by instance count; p99 is 1000 / throughput ms, so 1 instance (20 ms) misses the 15 ms bound.
PRIOR: Script = {1: (50.0, 1.0), 2: (100.0, 1.0), 3: (80.0, 1.0), 4: (120.0, 1.0)}
#: Another machine: slower, 3 instances best, 4 (16.7 ms) and 1 infeasible.
OTHER: Script = {1: (50.0, 1.0), 2: (70.0, 1.0), 3: (90.0, 1.0), 4: (60.0, 1.0)}


def _cfg(tmp_path: Path, digits_onnx: Path, study: str, search: dict[str, Any]) -> StudyConfig:
    data = {
        "study": study,
        "storage": f"sqlite:///{tmp_path / 'tuner.db'}",
        "model": {"name": "digits_forest", "path": str(digits_onnx)},
        "workers": {"backend": "local", "cpus_per_worker": 2},
        "search": {"seed": 1, **search},
        "constraints": {"latency_p99_ms": {"max": 15}},
        "load": {"concurrency": [8], "remeasure": {"top": 0}},
    }
    return parse_config(data, tmp_path)


def _prior(tmp_path: Path, digits_onnx: Path, name: str = "prior", script: Script = PRIOR) -> None:
    """Every config of a small space measured: batching at 16 with a 700 us delay, 1 to 4 instances."""
    space = {"instance_count": [1, 2, 3, 4], "max_batch_size": 16, "dynamic_batching": True,
             "max_queue_delay_us": 700}
    cfg = _cfg(tmp_path, digits_onnx, name, {"sampler": "grid", "n_trials": 4, "space": space})
    ScriptedRunner(cfg, ScriptedPool(script)).run()


def _next(
    tmp_path: Path, digits_onnx: Path, warm_start: Any, n_trials: int = 4, instances: int = 3, **search: Any
) -> StudyConfig:
    """A new space: instance_count to 3 only (4 is gone), batch size and batching searched."""
    space = {"instance_count": {"low": 1, "high": instances}, "max_batch_size": [1, 8],
             "dynamic_batching": [False, True],
             "max_queue_delay_us": {"low": 0, "high": 2000, "step": 1000}}
    return _cfg(tmp_path, digits_onnx, "next",
                {"sampler": "tpe", "n_trials": n_trials, "space": space, "warm_start": warm_start, **search})


def _batched(instances: int) -> dict[str, Any]:
    return {"max_batch_size": 8, "dynamic_batching": True, "instance_count": instances, "max_queue_delay_us": 1000}


def test_a_new_study_starts_with_the_default_then_the_priors_best_configs_in_its_space(
    tmp_path: Path, digits_onnx: Path, tuner_main: Any
) -> None:
    _prior(tmp_path, digits_onnx)
    cfg = _next(tmp_path, digits_onnx, {"from": ["prior"], "configs": 3})

    summary = ScriptedRunner(cfg, ScriptedPool(PRIOR)).run()

    first = [t.params for t in summary.stored.trials[:4]]
    # The prior's configs best first: 4 instances (120/s), 2 (100/s), 3 (80/s), then 1 (infeasible).
    # 4 instances is over the new range: 3; the 3 that follows is then a duplicate; batch size 16 moves
    # to 8, the 700 us delay to 1000.
    assert first == [
        {"max_batch_size": 1, "dynamic_batching": False, "instance_count": 1},  # the default config
        _batched(3),
        _batched(2),
        _batched(1),
    ]
    assert summary.stored.trials[0].is_default
    assert summary.stored.info.warm_start_from == ("prior",)
    shown = tuner_main("show", "next", "--storage", cfg.storage)
    assert "study next: configs (warm-started from prior)" in shown.stdout


def test_studies_are_merged_by_rank_feasible_first(tmp_path: Path, digits_onnx: Path) -> None:
    _prior(tmp_path, digits_onnx, "prior")
    _prior(tmp_path, digits_onnx, "other", OTHER)
    cfg = _next(tmp_path, digits_onnx, {"from": ["other", "prior"]}, instances=4)

    seeds = plan_study(cfg).seeds

    # Values of different machines are not compared: each study's best (other: 3, prior: 4), then each
    # one's second (other: 2; prior's 2 is then a duplicate), and the infeasible ones last (1).
    assert seeds is not None and seeds.studies == ("other", "prior")
    assert seeds.params == (_batched(3), _batched(4), _batched(2), _batched(1))
    one = plan_study(_next(tmp_path, digits_onnx, {"from": ["other", "prior"], "configs": 1}, instances=4)).seeds
    assert one is not None and one.params == (_batched(3),)


def test_an_unknown_study_stops_the_set_up_before_anything_starts(tmp_path: Path, digits_onnx: Path) -> None:
    cfg = _next(tmp_path, digits_onnx, {"from": ["nowhere"]})
    with pytest.raises(ConfigError, match="search.warm_start.from: no study database") as no_file:
        plan_study(cfg)
    assert no_file.value.exit_code == ExitCode.INPUT
    assert not (tmp_path / "tuner.db").exists()

    _prior(tmp_path, digits_onnx)
    pool = ScriptedPool(PRIOR)
    with pytest.raises(ConfigError, match=r"search.warm_start.from: no study 'nowhere' .*\(studies: prior\)"):
        ScriptedRunner(cfg, pool)
    assert pool.submitted == []
    assert Store(cfg.storage).study_names() == ["prior"], "the new study was not created"


def test_the_study_itself_or_a_sampler_without_warm_start_is_refused(tmp_path: Path, digits_onnx: Path) -> None:
    _prior(tmp_path, digits_onnx)
    renamed = _next(tmp_path, digits_onnx, {"from": ["prior"]}).model_copy(update={"study": "prior"})  # --study-name
    with pytest.raises(ConfigError, match="names this study"):
        plan_study(renamed)
    with pytest.raises(ConfigError, match="the grid sampler starts from no configs"):
        plan_study(_next(tmp_path, digits_onnx, {"from": ["prior"]}, sampler="grid"))


def test_a_prior_without_a_measured_config_is_a_warning(
    tmp_path: Path, digits_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    cfg = _next(tmp_path, digits_onnx, {"from": ["empty"]}, n_trials=1)

    with caplog.at_level(logging.WARNING, logger="tuner.study._transfer"):
        summary = ScriptedRunner(cfg, ScriptedPool(PRIOR)).run()

    assert "study 'empty' has no measured config" in caplog.text
    seeds = plan_study(cfg).seeds
    assert seeds is not None and seeds.params == () and seeds.unmeasured == ("empty",)
    assert [t.is_default for t in summary.stored.trials] == [True]
    assert read_study(summary.study).info.warm_start_from == ("empty",)


def test_true_and_false_start_as_before(tmp_path: Path, digits_onnx: Path) -> None:
    plan = plan_study(_next(tmp_path, digits_onnx, True))
    assert plan.seeds is None and plan_study(_next(tmp_path, digits_onnx, False)).seeds is None
    assert not (tmp_path / "tuner.db").exists(), "no storage is read without a transfer"
