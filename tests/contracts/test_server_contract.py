"""The server contract (tuner.triton._server.TritonServer), run against every launch mode.

embedded and local run the nvidia-pytriton wheel's tritonserver (local given by path, as a full
Triton's binary would be); remote reaches an embedded server this module starts; docker runs the
fake docker client of tests/tuner_triton (no Docker engine here), which serves Triton's health
endpoints only, so the tests that load a model leave docker out.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http
from served import settled_statistics

from tuner.errors import ModelLoadError, ServerStartError
from tuner.model_info import read_model_info
from tuner.trial import InstanceKind, TrialSpec
from tuner.triton import RUNNER_SOURCE, Access, TritonServer, build_model_config, to_pbtxt
from tuner.triton._docker import DockerServer
from tuner.triton._embedded import EmbeddedServer, embedded_backends, embedded_environment, pytriton_root
from tuner.triton._local import LocalServer
from tuner.triton._ports import free_port
from tuner.triton._remote import RemoteServer

pytestmark = pytest.mark.integration

MODEL = "digits_forest"
SPEC = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=1000, instance_count=1)
FAKE_DOCKER = Path(__file__).parents[1] / "tuner_triton" / "fake_docker.py"

MODES = ["embedded", "local", "docker", "remote"]


@dataclass
class Mode:
    """How to make a server of one launch mode, and what it can be asked.

    Attributes:
        name: The launch mode.
        make: A new, unstarted server for the worker folder given (its repository is ``folder/repository``).
        broken: A server of the mode that cannot start (no binary, nothing answering).
        refusal: What its start error says.
        serves_models: It loads models (the fake docker client does not).
        started_here: The tuner starts it: a new secret at each start, nothing of it left after stop.
    """

    name: str
    make: Callable[[Path], TritonServer]
    broken: Callable[[Path], TritonServer]
    refusal: str
    serves_models: bool = True
    started_here: bool = True


def _install(repository: Path, onnx_path: Path) -> None:
    """digits_forest through the python-backend runner (every mode here runs the wheel's Triton)."""
    version = repository / MODEL / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copy(onnx_path, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    config = build_model_config(MODEL, read_model_info(onnx_path), SPEC)
    (repository / MODEL / "config.pbtxt").write_text(to_pbtxt(config))


def _local(folder: Path) -> LocalServer:
    return LocalServer(
        pytriton_root() / "bin" / "tritonserver", folder / "server", folder / "repository",
        backend_directory=embedded_backends(folder / "backends"), native=False,
        env=embedded_environment({"PATH": os.environ.get("PATH", "")}),
    )


def _fake_docker(folder: Path) -> Path:
    client = folder / "bin" / "docker"
    client.parent.mkdir(parents=True)
    client.write_text(f"#!{sys.executable}\n" + FAKE_DOCKER.read_text())
    client.chmod(client.stat().st_mode | stat.S_IXUSR)
    return client


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode]:
    """One launch mode (with what it needs running: the fake docker client, the remote server)."""
    root = tmp_path_factory.mktemp(f"mode-{request.param}")
    if request.param == "embedded":
        yield Mode("embedded", lambda f: EmbeddedServer(f / "server", f / "repository"),
                   lambda f: EmbeddedServer(f / "server", f / "repository", startup_timeout_s=0.01),
                   "not ready after")
    elif request.param == "local":
        yield Mode("local", _local, lambda f: LocalServer(f / "no-tritonserver", f / "server", f / "repository"),
                   "no tritonserver binary")
    elif request.param == "docker":
        client = _fake_docker(root)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("FAKE_DOCKER_CALLS", str(root / "calls.jsonl"))
            yield Mode("docker", lambda f: DockerServer(f / "server", f / "repository", image="img", docker=str(client)),
                       lambda f: DockerServer(f / "server", f / "repository", docker=str(f / "no-docker")),
                       "cannot run", serves_models=False)
    else:
        with EmbeddedServer(root / "remote" / "server", root / "remote" / "repository") as remote:
            access = remote.access
            assert access is not None
            yield Mode(
                "remote",
                lambda f: RemoteServer(remote.http_url, f / "repository", remote.grpc_url, native=False,
                                       access=Access(access.key, access.value)),
                lambda f: RemoteServer(f"127.0.0.1:{free_port()}", f / "repository", startup_timeout_s=1),
                "no Triton server answered",
                started_here=False,
            )


@pytest.fixture(scope="module")
def started(mode: Mode, tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Iterator[TritonServer]:
    """A started server of the mode, shared by the module's tests of loading models."""
    folder = tmp_path_factory.mktemp(f"started-{mode.name}")
    _install(folder / "repository", digits_onnx)
    server = mode.make(folder)
    with server:
        yield server


@pytest.fixture
def fresh(mode: Mode, tmp_path: Path, digits_onnx: Path) -> Iterator[TritonServer]:
    """An unstarted server of the mode, its repository holding digits_forest; stopped after the test."""
    _install(tmp_path / "repository", digits_onnx)
    server = mode.make(tmp_path)
    yield server
    server.stop()


def _ready(http_url: str) -> bool:
    client = triton_http.InferenceServerClient(http_url)
    try:
        return bool(client.is_model_ready(MODEL))
    finally:
        client.close()


def _infer(http_url: str, rows: int = 3) -> np.ndarray:
    client = triton_http.InferenceServerClient(http_url)
    try:
        data = np.random.default_rng(0).random((rows, 64), dtype=np.float32)
        inputs = [triton_http.InferInput("float_input", list(data.shape), "FP32")]
        inputs[0].set_data_from_numpy(data)
        result = client.infer(MODEL, inputs)
        return result.as_numpy(result.get_response()["outputs"][-1]["name"])
    finally:
        client.close()


def _family(server: TritonServer) -> list[psutil.Process]:
    """The server's process and every process under it (its python backend stubs), where it has one here."""
    if server.pid is None:
        return []
    process = psutil.Process(server.pid)
    return [process, *process.children(recursive=True)]


def test_start_stop_and_start_again(mode: Mode, fresh: TritonServer) -> None:
    fresh.stop()  # before start: nothing to undo
    assert not fresh.is_alive()

    fresh.start()
    assert fresh.is_alive() and fresh.is_ready()
    urls, pid, access = (fresh.http_url, fresh.grpc_url), fresh.pid, fresh.access
    assert all(url.rsplit(":", 1)[1].isdigit() for url in urls)
    assert (pid is not None) == (mode.name in ("embedded", "local"))  # docker and remote: not seen here
    fresh.start()  # started: nothing happens
    assert ((fresh.http_url, fresh.grpc_url), fresh.pid, fresh.access) == (urls, pid, access)

    if mode.serves_models:
        fresh.load(MODEL)
        assert _infer(fresh.http_url).shape[0] == 3
    family = _family(fresh)
    assert len(family) >= (2 if pid is not None else 0)  # the server and its stub: its CPU can be measured
    fresh.stop()
    fresh.stop()
    assert not fresh.is_alive()
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if not mode.started_here:  # the server goes on, without the model this object loaded
        assert not _ready(urls[0])
    for call in (fresh.load, fresh.unload, fresh.model_statistics):
        with pytest.raises(ServerStartError):
            call(MODEL)
    assert isinstance(fresh.log_tail(), str) and isinstance(fresh.last_error(), str)

    fresh.start()  # as a worker restarts a server that died
    assert fresh.is_ready()
    if mode.started_here:  # a new secret: a client of the stopped server opens nothing
        assert access is not None and fresh.access is not None and fresh.access != access


def test_a_server_that_cannot_start_is_a_start_error(mode: Mode, tmp_path: Path) -> None:
    server = mode.broken(tmp_path)

    with pytest.raises(ServerStartError, match=mode.refusal):
        server.start()

    assert not server.is_alive() and server.pid is None
    server.stop()


def test_load_serves_the_model_and_unload_takes_it_away(mode: Mode, started: TritonServer) -> None:
    if not mode.serves_models:
        pytest.skip("the fake docker client serves Triton's health endpoints only")
    started.load(MODEL)

    assert _infer(started.http_url).shape[0] == 3
    assert int(settled_statistics(started, MODEL, inferences=3)["inference_count"]) >= 3
    started.unload(MODEL)
    assert not _ready(started.http_url)
    assert started.is_alive()


def test_a_refused_config_is_a_load_error_and_the_server_goes_on(
    mode: Mode, started: TritonServer, digits_onnx: Path
) -> None:
    if not mode.serves_models:
        pytest.skip("the fake docker client serves Triton's health endpoints only")
    config_file = _repository(started) / MODEL / "config.pbtxt"
    good = config_file.read_text()
    # GPU instances on a server without a GPU: Triton refuses the config before any instance starts.
    on_gpu = dataclasses.replace(SPEC, kind=InstanceKind.GPU)
    config_file.write_text(to_pbtxt(build_model_config(MODEL, read_model_info(digits_onnx), on_gpu)))
    try:
        with pytest.raises(ModelLoadError) as refused:
            started.load(MODEL)
    finally:
        config_file.write_text(good)

    assert "GPU" in str(refused.value) or "gpu" in str(refused.value)
    assert started.last_error() and started.is_alive()  # what the worker asks before its next trial


def _repository(server: TritonServer) -> Path:
    repository = getattr(server, "repository", None)
    assert isinstance(repository, Path)
    return repository
