"""The bundled OCR pipeline (an ensemble of three models) tuned end to end: the real embedded server,
perf_analyzer and SQLite; its export loaded by a fresh server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import yaml
from factories import QUICK_LOAD
from optuna.trial import TrialState
from served import infer_on_fresh_server
from served import run_tuner as _tuner

from tuner.triton import parse_pbtxt

STEPS = ["preprocess", "detector", "postprocess"]


def test_a_pipeline_is_tuned_per_step_and_exported_whole(tmp_path: Path, ocr_pipeline_repository: Path) -> None:
    shutil.copytree(ocr_pipeline_repository, tmp_path / "repo")
    study = {
        "study": "pipeline",
        "storage": "sqlite:///tuner.db",
        "model": {"name": "ocr_pipeline", "repository": "repo"},
        "workers": {"backend": "local"},
        "search": {
            "sampler": "bo",
            "n_trials": 2,
            "seed": 1,
            "space": {
                "instance_count": [1, 2],
                "dynamic_batching": False,
                "max_batch_size": [4],
                "models": {"detector": {"accelerator": ["none", "openvino"]}},
            },
        },
        "constraints": {"latency_p99_ms": {"max": 2000}},
        "load": QUICK_LOAD | {"concurrency": [4]},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    result = _tuner("optimize", "study.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    stored = optuna.load_study(study_name="pipeline", storage=f"sqlite:///{tmp_path / 'tuner.db'}")
    reasons = [t.user_attrs.get("fail_reason") for t in stored.trials]
    assert [t.state for t in stored.trials] == [TrialState.COMPLETE] * 2, reasons
    # The first trial is every model's own config: one instance each, the CPU provider for the detector.
    first = stored.trials[0].params
    assert {first[f"{s}.instance_count"] for s in STEPS} == {1} and first["detector.accelerator"] == "none"

    shown = _tuner("show", "pipeline", "--storage", "sqlite:///tuner.db", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    trials = json.loads(shown.stdout)["trials"]
    for trial in trials:
        window = trial["server"]["4"]
        assert list(window["steps"]) == STEPS
        for step in STEPS:  # every request of the pipeline ran every step
            assert window["steps"][step]["requests"] == window["requests"] > 0
            assert window["steps"][step]["compute_infer_ms"] > 0
        point = trial["points"][0]
        queued = sum(window["steps"][s]["queue_ms"] for s in STEPS)
        assert abs(point["server_queue_ms"] - queued - window["queue_ms"]) < 0.05 + 0.1 * queued
        assert [e["rule"] for e in trial["explanations"] if e["rule"] == "bottleneck"] == ["bottleneck"]
    text = _tuner("show", "pipeline", "--storage", "sqlite:///tuner.db", "--trial", 1, cwd=tmp_path).stdout
    assert all(f"step {s}: queue" in text for s in STEPS) and "holds the pipeline back" in text

    exported = _tuner("export", "pipeline", "deploy", "--storage", "sqlite:///tuner.db", "--trial", 1, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    deploy = tmp_path / "deploy"
    assert sorted(p.name for p in deploy.iterdir() if p.is_dir()) == sorted([*STEPS, "ocr_pipeline"])
    params = trials[1]["params"]
    for step in STEPS:
        config = parse_pbtxt((deploy / step / "config.pbtxt").read_text())
        assert config.instance_group[0].count == params[f"{step}.instance_count"]
    detector = parse_pbtxt((deploy / "detector" / "config.pbtxt").read_text())
    provider = {"none": "CPUExecutionProvider", "openvino": "OpenVINOExecutionProvider"}[params["detector.accelerator"]]
    assert detector.parameters["execution_provider"].string_value == provider
    assert (deploy / "detector" / "1" / "model.py").is_file() and (deploy / "detector" / "1" / "model.onnx").is_file()

    # The export is a repository a fresh server loads; the pipeline finds the three lines of a page, none on a blank one.
    page = np.full((2, 320, 320, 3), 255, dtype=np.uint8)
    for top in (60, 140, 220):
        page[0, top : top + 24, 40:280] = 0  # dark bands on white: lines of text to the detector
    answer = infer_on_fresh_server(deploy, tmp_path / "server", "ocr_pipeline", {"image": page})
    assert answer.as_numpy("text_regions").ravel().tolist() == [3, 0]
    fraction = answer.as_numpy("text_fraction").ravel()
    assert 0.05 < fraction[0] < 0.5 and fraction[1] == 0.0
