"""The study file's ``server`` section: the four launch modes and the fields each one takes."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tuner.config import RemoteEndpoint, StudyConfig, parse_config
from tuner.errors import ConfigError


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A folder with models/tiny.onnx and bin/tritonserver, as a study file's neighbours."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny", [x], [y])
    (tmp_path / "models").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "models" / "tiny.onnx"))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tritonserver").write_text("")
    return tmp_path


def _study(base: Path, server: dict, **extra: object) -> StudyConfig:
    data = {"study": "s", "model": {"name": "tiny", "path": "models/tiny.onnx"}, "server": server, **extra}
    return parse_config(data, base)


def _error(base: Path, server: dict, **extra: object) -> str:
    with pytest.raises(ConfigError) as info:
        _study(base, server, **extra)
    return str(info.value)


def test_embedded_is_the_default_and_runs_the_python_runner(base: Path) -> None:
    server = _study(base, {}).server
    assert server.launch == "embedded" and not server.native


def test_local_needs_an_existing_binary_resolved_against_the_file(base: Path) -> None:
    server = _study(base, {"launch": "local", "binary": "bin/tritonserver"}).server
    assert server.binary == base / "bin" / "tritonserver" and server.native
    assert "server.binary: launch: local needs the path" in _error(base, {"launch": "local"})
    assert "server.binary:" in _error(base, {"launch": "local", "binary": "bin/nothing"})
    assert "server.backend_directory:" in _error(
        base, {"launch": "local", "binary": "bin/tritonserver", "backend_directory": "no-such-dir"}
    )


def test_docker_defaults_and_native_form(base: Path) -> None:
    server = _study(base, {"launch": "docker", "docker_args": ["--ipc=host"]}).server
    assert server.native and server.image is None and server.docker_args == ["--ipc=host"]


def test_remote_needs_urls_and_takes_one_worker_per_server(base: Path) -> None:
    assert "server.remote: launch: remote needs the server's URL" in _error(base, {"launch": "remote"})
    cfg = _study(base, {"launch": "remote", "remote": ["gpu-a:8000", {"http": "http://gpu-b:8000", "grpc": "gpu-b:9001"}]})
    assert cfg.workers.count == 2 and cfg.server.native
    assert cfg.server.remote[1] == RemoteEndpoint(http="http://gpu-b:8000", grpc="gpu-b:9001")
    assert _study(base, {"launch": "remote", "remote": "gpu-a:8000"}).workers.count == 1
    message = _error(base, {"launch": "remote", "remote": ["gpu-a:8000"]}, workers={"count": 2})
    assert "workers.count: launch remote runs one worker per server" in message


def test_remote_url_must_be_host_and_port(base: Path) -> None:
    assert "server.remote.0.http: expected host:port" in _error(base, {"launch": "remote", "remote": ["gpu-a"]})
    assert "expected host:port" in _error(base, {"launch": "remote", "remote": ["https://gpu-a:8000"]})


def test_remote_takes_no_local_ports(base: Path) -> None:
    ports = {"http_port": 8000, "grpc_port": 8001, "metrics_port": 8002}
    assert "server.http_port: launch: remote uses the ports" in _error(
        base, {"launch": "remote", "remote": ["a:8000"], **ports}
    )


@pytest.mark.parametrize(("field", "value", "mode"), [
    ("binary", "bin/tritonserver", "local"),
    ("image", "nvcr.io/nvidia/tritonserver:24.10-py3", "docker"),
    ("docker_args", ["--ipc=host"], "docker"),
    ("remote", ["a:8000"], "remote"),
])
def test_a_field_of_another_mode_is_an_error(base: Path, field: str, value: object, mode: str) -> None:
    assert f"server.{field}: only used with launch: {mode}" in _error(base, {field: value})


def test_embedded_cannot_run_the_onnxruntime_backend(base: Path) -> None:
    assert "server.triton_backend: the embedded server has the python backend only" in _error(
        base, {"triton_backend": "onnxruntime"}
    )
    assert not _study(base, {"launch": "docker", "triton_backend": "python"}).server.native


def test_unknown_launch_names_the_valid_ones(base: Path) -> None:
    message = _error(base, {"launch": "kubernetes"})
    assert "server.launch" in message and "'remote'" in message
