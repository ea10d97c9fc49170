"""Bad input to `tuner optimize`: one line naming the field or cause, exit code 2, nothing started."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TUNER = [sys.executable, "-m", "tuner.cli"]


def _write(folder: Path, onnx: Path, **changes: object) -> Path:
    data: dict = {
        "study": "bad",
        "model": {"name": "digits_forest", "path": str(onnx)},
        "search": {"n_trials": 1, "space": {"instance_count": {"low": 1, "high": 2}}},
    }
    data.update(changes)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _optimize(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUNER, "optimize", str(path)], cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def _assert_refused(result: subprocess.CompletedProcess[str], folder: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: ")
    for needle in needles:
        assert needle in message
    assert not (folder / "tuner.db").exists(), "a study was started"
    assert not (folder / ".tuner").exists(), "a worker was started"


@pytest.mark.parametrize(
    ("changes", "needles"),
    [
        ({"search": {"sampler": "annealing"}}, ["search.sampler", "tpe"]),
        ({"search": {"space": {"instance_count": {"low": -1, "high": 2}}}}, ["search.space.instance_count"]),
        ({"search": {"space": {"max_batch_size": []}}}, ["search.space.max_batch_size"]),
        ({"objectives": [{"metric": "speed", "direction": "maximize"}]}, ["objectives.0.metric", "speed"]),
        ({"model": {"name": "m", "path": "missing.onnx"}}, ["model.path", "missing.onnx"]),
        ({"surprise": 1}, ["surprise: unknown field"]),
        ({"search": {"space": {"accelerator": ["none", "tensorrt"]}}}, ["search.space.accelerator", "GPU"]),
        ({"search": {"sampler": "grid", "space": {"max_batch_size": {"low": 1, "high": 64, "log": True}}}},
         ["search.space.max_batch_size", "grid"]),
    ],
)
def test_invalid_fields(tmp_path: Path, digits_onnx: Path, changes: dict, needles: list[str]) -> None:
    path = _write(tmp_path, digits_onnx, **changes)
    _assert_refused(_optimize(path, tmp_path), tmp_path, *needles)


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("study: x\nmodel: {name: [unclosed\n")
    _assert_refused(_optimize(path, tmp_path), tmp_path, "malformed YAML", "line")


def test_missing_study_file(tmp_path: Path) -> None:
    _assert_refused(_optimize(tmp_path / "nope.yaml", tmp_path), tmp_path, "cannot read study file")


def test_port_already_taken(tmp_path: Path, digits_onnx: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        path = _write(tmp_path, digits_onnx, server={"http_port": port, "grpc_port": port + 1, "metrics_port": port + 2})
        _assert_refused(_optimize(path, tmp_path), tmp_path, "server.http_port", "already in use")


def test_unknown_study_in_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = subprocess.run([*TUNER, "show", "nothing", "--storage", url], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "no study database" in result.stderr
    assert not (tmp_path / "x.db").exists()

    import optuna

    optuna.create_study(study_name="other", storage=url)
    result = subprocess.run([*TUNER, "show", "nothing", "--storage", url], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "no study 'nothing'" in result.stderr and "other" in result.stderr
