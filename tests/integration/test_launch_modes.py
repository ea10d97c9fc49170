"""The remote launch mode against a real server, beyond the contract every mode keeps.

remote: a Triton server started as a separate process, which the tuner did not start and whose
repository it does not write: configs go in the load request with the model files. What every
launch mode does alike (start, load, unload, stop, restart; local with the nvidia-pytriton
wheel's tritonserver given by path) is tests/contracts/test_server_contract.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from served import settled_statistics

from tuner.config import ServerSettings
from tuner.errors import ModelLoadError
from tuner.model_info import read_model_info
from tuner.trial import TrialSpec
from tuner.triton import RUNNER_SOURCE, Access, build_model_config, to_pbtxt
from tuner.triton._access import ENV_KEY, ENV_VALUE
from tuner.triton._remote import RemoteServer

SPEC = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=1000, instance_count=1)

# Runs in its own Python process: an embedded server on free ports with the bystander loaded,
# until SIGTERM. It writes its URLs and its header (what its operator would hand the tuner's
# operator) to the file named by argv[3] once ready.
_SERVE = """
import json, signal, sys, threading
from pathlib import Path
from tuner.triton._embedded import EmbeddedServer
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
with EmbeddedServer(Path(sys.argv[1]), Path(sys.argv[2])) as server:
    server.load("bystander")
    access = {"key": server.access.key, "value": server.access.value}
    Path(sys.argv[3]).write_text(json.dumps({"http": server.http_url, "grpc": server.grpc_url, "access": access}))
    stop.wait()
"""


def _install(repository: Path, name: str, onnx_path: Path) -> None:
    version = repository / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy(onnx_path, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    (repository / name / "config.pbtxt").write_text(to_pbtxt(build_model_config(name, read_model_info(onnx_path), SPEC)))


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Iterator[dict]:
    """A Triton server in another process, its repository holding only the bystander model."""
    root = tmp_path_factory.mktemp("remote")
    _install(root / "repository", "bystander", digits_onnx)
    urls = root / "urls.json"
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(root / "work"), str(root / "repository"), str(urls)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not urls.is_file():
            assert process.poll() is None and time.monotonic() < deadline, "the remote server did not start"
            time.sleep(0.2)
        yield json.loads(urls.read_text())
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _ready(http_url: str, name: str) -> bool:
    client = triton_http.InferenceServerClient(http_url)
    try:
        return bool(client.is_model_ready(name))
    finally:
        client.close()


def _infer(http_url: str, name: str, rows: int = 3) -> np.ndarray:
    client = triton_http.InferenceServerClient(http_url)
    try:
        data = np.random.default_rng(0).random((rows, 64), dtype=np.float32)
        inputs = [triton_http.InferInput("float_input", list(data.shape), "FP32")]
        inputs[0].set_data_from_numpy(data)
        result = client.infer(name, inputs)
        return result.as_numpy(result.get_response()["outputs"][-1]["name"])
    finally:
        client.close()


def test_remote_load_with_override_serves_and_unloads_only_its_model(
    remote: dict, tmp_path: Path, digits_onnx: Path
) -> None:
    repository = tmp_path / "repository"  # the worker's own: the server never sees this folder
    _install(repository, "digits_forest", digits_onnx)
    access = Access(**remote["access"])
    with RemoteServer(remote["http"], repository, remote["grpc"], native=False, access=access) as server:
        assert server.pid is None and server.is_alive()
        server.load("digits_forest")
        assert _infer(server.http_url, "digits_forest").shape[0] == 3
        assert int(settled_statistics(server, "digits_forest", inferences=3)["inference_count"]) == 3
        server.unload("digits_forest")
        assert not _ready(remote["http"], "digits_forest")
        assert _ready(remote["http"], "bystander")  # unloading touches no other model

        (repository / "digits_forest" / "1" / "model.onnx").write_bytes(b"not a model")
        with pytest.raises(ModelLoadError, match="digits_forest"):
            server.load("digits_forest")
        assert "digits_forest" in server.last_error()
        shutil.copy(digits_onnx, repository / "digits_forest" / "1" / "model.onnx")
        server.load("digits_forest")  # stop() unloads what this object loaded, and only that
    assert not _ready(remote["http"], "digits_forest")
    assert _ready(remote["http"], "bystander")


def test_a_restricted_remote_server_refuses_a_load_without_its_header(
    remote: dict, tmp_path: Path, digits_onnx: Path
) -> None:
    repository = tmp_path / "repository"
    _install(repository, "digits_forest", digits_onnx)
    for access in (None, Access(remote["access"]["key"], "guess")):
        with (
            RemoteServer(remote["http"], repository, remote["grpc"], native=False, access=access) as server,
            pytest.raises(ModelLoadError, match="restricted"),
        ):
            server.load("digits_forest")
    assert not _ready(remote["http"], "digits_forest")


def test_a_worker_measures_on_a_remote_server(
    remote: dict, tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner.measure import EngineSettings, SweepPlan
    from tuner.workers import WorkerSetup
    from tuner.workers._worker import Worker

    settings = ServerSettings(launch="remote", remote=[{"http": remote["http"], "grpc": remote["grpc"]}],
                              triton_backend="python")
    setup = WorkerSetup(
        model_name="digits_forest", model_path=digits_onnx, model_info=read_model_info(digits_onnx),
        workdir=tmp_path / "worker", sweep=SweepPlan(fixed=(2,)), engine=EngineSettings(window_ms=500, max_windows=4),
        server=settings,
    )
    # The remote server's operator hands its header over in the environment, not in the study file.
    monkeypatch.setenv(ENV_KEY, remote["access"]["key"])
    monkeypatch.setenv(ENV_VALUE, remote["access"]["value"])
    with Worker(setup) as worker:
        assert worker.server.pid is None and worker.server.access == Access(**remote["access"])
        outcome = worker.evaluate(SPEC)
        assert outcome.error is None, outcome.error
        assert outcome.points and outcome.points[0].throughput > 0
        assert outcome.server["2"]["requests"] > 0  # the server's own statistics, read remotely
        assert _ready(remote["http"], "digits_forest")  # kept for the next trial's load to replace
    assert not _ready(remote["http"], "digits_forest")  # the worker's stop unloads it
    assert _ready(remote["http"], "bystander")


