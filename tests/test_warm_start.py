"""The warm start in the study loop: queued a config at a time, so that a failed accelerator changes the rest.

The study loop, the bo sampler and SQLite are the real ones; the workers are a scripted pool (tests/scripted.py)
on which an accelerator can fail every load, as OpenVINO does on a model whose output rank it refuses.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from factories import instances_study
from scripted import ScriptedPool, ScriptedRunner

from tuner.config import parse_config
from tuner.storage import ATTR_DEFAULT, ATTR_NO_VARIANT, ATTR_WARM_START
from tuner.trial import TrialSpec

SCRIPT = {1: (50.0, 1.0), 2: (90.0, 1.0)}


def _run(tmp_path: Path, digits_onnx: Path, pool: ScriptedPool, n_trials: int = 6) -> list[TrialSpec]:
    data = instances_study("warm", f"sqlite:///{tmp_path / 'warm.db'}", str(digits_onnx), sampler="bo",
                           n_trials=n_trials)
    data["search"]["space"] = {"instance_count": [1, 2], "max_batch_size": [4, 8], "dynamic_batching": [False, True],
                               "max_queue_delay_us": [0, 1000], "accelerator": ["none", "openvino"]}
    data["load"]["remeasure"] = {"loads": 0}
    ScriptedRunner(parse_config(data, tmp_path), pool).run()
    return pool.submitted


def _changes(spec: TrialSpec) -> tuple[int, bool, str]:
    return spec.instance_count, spec.dynamic_batching, spec.accelerator


def test_the_warm_start_pairs_the_rules_of_thumb_where_every_accelerator_loads(
    tmp_path: Path, digits_onnx: Path
) -> None:
    submitted = _run(tmp_path, digits_onnx, ScriptedPool(SCRIPT))

    assert [_changes(s) for s in submitted[:4]] == [
        (1, False, "none"), (2, True, "none"), (2, False, "openvino"), (1, True, "openvino")
    ]


def test_an_accelerator_that_fails_to_load_is_replaced_by_the_changes_without_it(
    tmp_path: Path, digits_onnx: Path
) -> None:
    submitted = _run(tmp_path, digits_onnx, ScriptedPool(SCRIPT, failing=("openvino",)))

    # after OpenVINO failed, the rest of the warm start is the two other changes alone, on the default's accelerator
    assert [_changes(s) for s in submitted[:5]] == [
        (1, False, "none"), (2, True, "none"), (2, False, "openvino"), (2, False, "none"), (1, True, "none")
    ]
    trials = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path / 'warm.db'}").trials
    assert ATTR_DEFAULT in trials[0].user_attrs and all(ATTR_WARM_START in t.user_attrs for t in trials[1:5])
    assert not any(ATTR_WARM_START in t.user_attrs for t in trials[5:]), "the sampler's proposals end it"


@pytest.mark.parametrize("n_trials", [1, 3])
def test_the_warm_start_stays_within_the_budget(tmp_path: Path, digits_onnx: Path, n_trials: int) -> None:
    submitted = _run(tmp_path, digits_onnx, ScriptedPool(SCRIPT), n_trials=n_trials)

    assert len(submitted) == n_trials


def test_a_precision_the_model_has_no_variant_of_is_tried_once_in_a_study(tmp_path: Path, digits_onnx: Path) -> None:
    data = instances_study("variants", f"sqlite:///{tmp_path / 'variants.db'}", str(digits_onnx), sampler="bo",
                           n_trials=12)
    data["search"]["space"] = {"instance_count": [1, 2], "max_batch_size": [4, 8], "dynamic_batching": [False],
                               "accelerator": ["none", "openvino"],
                               "precision": ["fp32", "int8"]}
    data["load"]["remeasure"] = {"loads": 0}
    pool = ScriptedPool(SCRIPT, no_variant=("int8",))
    ScriptedRunner(parse_config(data, tmp_path), pool).run()

    assert [s.precision for s in pool.submitted].count("int8") == 1, [(s.accelerator, s.precision) for s in pool.submitted]
    assert len(pool.submitted) == 9, "the 8 FP32 configs and one INT8, then the sampler has nothing left"
    trials = optuna.load_study(study_name="variants", storage=f"sqlite:///{tmp_path / 'variants.db'}").trials
    [failed] = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed.user_attrs[ATTR_NO_VARIANT] == "int8"
