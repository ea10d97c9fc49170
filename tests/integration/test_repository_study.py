"""A model from a Triton repository, tuned end to end: the real embedded server, perf_analyzer and SQLite.

The python-backend model is written by the test as someone else would write it (tests/factories.py:
``doubler``, with an instance group, a version policy and a parameter of its own), not by the tuner.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import yaml
from factories import DOUBLER_MODEL_PY, digits_study, doubler_repository
from optuna.trial import TrialState
from served import infer_on_fresh_server
from served import run_tuner as _tuner

from tuner.storage import read_info
from tuner.triton import parse_pbtxt

SPACE = {
    "max_batch_size": [1, 8],
    "dynamic_batching": [False, True],
    "max_queue_delay_us": {"low": 0, "high": 2000, "step": 500},
    "instance_count": {"low": 1, "high": 2},
}


def _optimize(folder: Path, name: str, model: dict[str, str]) -> list[dict]:
    """Runs a 2-trial study of ``model`` in ``folder``; returns its trials as `tuner show --json` has them."""
    data = digits_study(name, "unused", n_trials=2, storage="sqlite:///tuner.db", model=model)
    data["search"]["space"] = SPACE
    data["constraints"] = {"latency_p99_ms": {"max": 1000}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    result = _tuner("optimize", path, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    study = _study(folder, name)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.trials[0].user_attrs["default_config"] is True
    shown = _tuner("show", name, "--storage", "sqlite:///tuner.db", "--json", cwd=folder)
    assert shown.returncode == 0, shown.stderr[-2000:]
    trials: list[dict] = json.loads(shown.stdout)["trials"]
    return trials


def _study(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'tuner.db'}")


def test_a_python_model_is_tuned_from_its_own_config_and_exported_with_its_files(tmp_path: Path) -> None:
    doubler_repository(tmp_path / "repo")
    trials = _optimize(tmp_path, "doubler-study", {"name": "doubler", "repository": "repo"})
    info = read_info(_study(tmp_path, "doubler-study"))
    assert info.model_backend == "python" and not info.has_variants  # explanations suggest no accelerator to it

    # The first trial is the model's own config: max_batch_size 8, one instance, no batcher.
    assert trials[0]["params"]["max_batch_size"] == 8 and trials[0]["params"]["instance_count"] == 1
    assert trials[0]["params"]["dynamic_batching"] is False
    for trial in trials:
        assert trial["metrics"]["throughput"] > 0
        config = parse_pbtxt(trial["config_pbtxt"])
        assert config.backend == "python" and "onnx_file" not in config.parameters  # its own model.py, no runner
        assert config.parameters["greeting"].string_value == "kept"
        assert config.version_policy.latest.num_versions == 1
        assert config.instance_group[0].count == trial["params"]["instance_count"]
        assert trial["accuracy"] in (None, {})  # no ONNX reference to compare with (README says why)

    exported = _tuner("export", "doubler-study", "deploy", "--storage", "sqlite:///tuner.db", "--trial", 1, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    model = tmp_path / "deploy" / "doubler"
    assert (model / "1" / "model.py").read_text() == DOUBLER_MODEL_PY
    assert (model / "labels.txt").is_file() and not (model / "1" / "model.onnx").exists()
    assert (model / "config.pbtxt").read_text() == trials[1]["config_pbtxt"]

    # The export is a repository a fresh server loads, and the model answers as its author wrote it.
    samples = np.arange(8, dtype=np.float32).reshape(2, 4)
    answer = infer_on_fresh_server(tmp_path / "deploy", tmp_path / "server", "doubler", {"INPUT0": samples})
    doubled = answer.as_numpy("OUTPUT0")
    assert np.array_equal(doubled, samples * 2)


ONNX_CONFIG = """
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy { latest { num_versions: 1 } }
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "enable_mem_arena" value: { string_value: "1" } }
"""


def test_an_onnx_model_of_a_repository_runs_through_the_runner_from_its_own_config(
    tmp_path: Path, digits_onnx: Path
) -> None:
    version = tmp_path / "repo" / "digits" / "2"
    version.mkdir(parents=True)
    shutil.copy(digits_onnx, version / "model.onnx")
    (version.parent / "config.pbtxt").write_text(ONNX_CONFIG)
    trials = _optimize(tmp_path, "digits-repo", {"name": "digits", "repository": "repo"})
    assert read_info(_study(tmp_path, "digits-repo")).model_backend == "onnxruntime"

    assert trials[0]["params"]["max_batch_size"] == 8 and trials[0]["params"]["instance_count"] == 2
    for trial in trials:
        config = parse_pbtxt(trial["config_pbtxt"])
        assert (config.backend, config.platform) == ("python", "")
        assert config.parameters["enable_mem_arena"].string_value == "1"
        assert [t.name for t in config.input] == ["float_input"]  # from the ONNX file: the config lists none
        assert trial["accuracy"]["accuracy_drop"] == 0.0  # the FP32 file against itself through Triton

    exported = _tuner("export", "digits-repo", "deploy", "--storage", "sqlite:///tuner.db", "--trial", 0, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / "deploy" / "digits" / "2" / "model.onnx").read_bytes() == digits_onnx.read_bytes()
    assert (tmp_path / "deploy" / "digits" / "2" / "model.py").is_file()  # the runner the config names
