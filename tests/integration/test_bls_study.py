"""A python model that calls others through BLS, tuned with them: the real embedded server, perf_analyzer, SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from factories import QUADRUPLER_BLS_PY, QUICK_LOAD, bls_repository
from served import infer_on_fresh_server
from served import run_tuner as _tuner

from tuner.triton import parse_pbtxt

MODELS = ["bls_quadrupler", "first", "second"]


def test_a_bls_model_is_tuned_with_the_models_it_calls(tmp_path: Path) -> None:
    bls_repository(tmp_path / "repo")
    study = {
        "study": "bls",
        "storage": "sqlite:///tuner.db",
        "model": {"name": "bls_quadrupler", "repository": "repo", "composing": ["first", "second"]},
        "workers": {"backend": "local"},
        "search": {
            "sampler": "random",
            "n_trials": 2,
            "seed": 2,
            "space": {"instance_count": [1, 2], "max_batch_size": 8, "models": {"second": {"dynamic_batching": True}}},
        },
        "load": QUICK_LOAD,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    result = _tuner("optimize", "study.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    shown = _tuner("show", "bls", "--storage", "sqlite:///tuner.db", "--json", cwd=tmp_path)
    trials = json.loads(shown.stdout)["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    # The calling model's knobs are its own, beside the called models'; the first trial is every model's own config.
    assert {f"{m}.instance_count" for m in MODELS} <= set(trials[0]["params"])
    assert [trials[0]["params"][f"{m}.instance_count"] for m in MODELS] == [1, 1, 2]
    for trial in trials:
        window = trial["server"]["2"]
        assert list(window["steps"]) == ["first", "second"]
        # every request of the calling model made one call of each model it calls
        assert window["steps"]["first"]["requests"] == window["steps"]["second"]["requests"] == window["requests"] > 0
        assert parse_pbtxt(trial["config_pbtxt"]).instance_group[0].count == trial["params"]["bls_quadrupler.instance_count"]

    exported = _tuner("export", "bls", "deploy", "--storage", "sqlite:///tuner.db", "--trial", 1, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    deploy = tmp_path / "deploy"
    assert (deploy / "bls_quadrupler" / "1" / "model.py").read_text() == QUADRUPLER_BLS_PY
    for model in ("first", "second"):
        config = parse_pbtxt((deploy / model / "config.pbtxt").read_text())
        assert config.instance_group[0].count == trials[1]["params"][f"{model}.instance_count"]

    samples = np.arange(8, dtype=np.float32).reshape(2, 4)
    # a BLS model's callees are loaded on their own
    result = infer_on_fresh_server(deploy, tmp_path / "server", "bls_quadrupler", {"IN": samples}, ("first", "second"))
    answer = result.as_numpy("OUT")
    assert np.array_equal(answer, samples * 4)
