"""A python model that calls others through BLS, tuned with them: the real embedded server, perf_analyzer, SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
import yaml
from factories import QUADRUPLER_BLS_PY, bls_repository

from tuner.triton import parse_pbtxt
from tuner.triton._embedded import EmbeddedServer

TUNER = [sys.executable, "-m", "tuner.cli"]
MODELS = ["bls_quadrupler", "first", "second"]


def _tuner(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUNER, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        stdin=subprocess.DEVNULL,
    )


def test_a_bls_model_is_tuned_with_the_models_it_calls(tmp_path: Path) -> None:
    bls_repository(tmp_path / "repo")
    study = {
        "study": "bls",
        "storage": "sqlite:///tuner.db",
        "model": {"name": "bls_quadrupler", "repository": "repo", "composing": ["first", "second"]},
        "workers": {"count": 1},
        "search": {
            "sampler": "random",
            "n_trials": 2,
            "seed": 2,
            "space": {"instance_count": [1, 2], "max_batch_size": 8, "models": {"second": {"dynamic_batching": True}}},
        },
        "load": {"concurrency": [2], "measurement_window_ms": 500, "remeasure": {"loads": 0}, "early_stop": {"enabled": False}},
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
    with EmbeddedServer(tmp_path / "server", deploy) as server:
        for model in ("first", "second", "bls_quadrupler"):  # a BLS model's callees are loaded on their own
            server.load(model)
        client = triton_http.InferenceServerClient(server.http_url)
        request = triton_http.InferInput("IN", list(samples.shape), "FP32")
        request.set_data_from_numpy(samples)
        answer = client.infer("bls_quadrupler", [request]).as_numpy("OUT")
        client.close()
    assert np.array_equal(answer, samples * 4)
