"""The launch modes without a server: command lines, the factory, the docker lifecycle with a fake client.

No Docker engine and no full tritonserver run on these machines, so the docker and local command
lines are checked here; tests/contracts/test_server_contract.py runs every launch mode (local with
the wheel's binary, docker with the fake client) through the server contract.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from tuner.config import RemoteEndpoint, ServerSettings
from tuner.errors import ConfigError, ServerStartError
from tuner.triton import Access, check_launch, make_server, worker_gpus
from tuner.triton._access import ENV_KEY, ENV_VALUE
from tuner.triton._docker import (
    DEFAULT_IMAGE,
    DockerServer,
    container_name,
    docker_remove_command,
    docker_run_command,
    docker_stop_command,
    gpu_flag,
)
from tuner.triton._embedded import EmbeddedServer
from tuner.triton._local import LocalServer, local_command
from tuner.triton._ports import Ports
from tuner.triton._process import ProcessServer
from tuner.triton._remote import RemoteServer, load_request

PORTS = Ports(http=18000, grpc=18001, metrics=18002)
ACCESS = Access("tuner-key", "s3cret")
RESTRICTIONS = [
    "--grpc-restricted-protocol=model-repository,model-config,shared-memory:tuner-key=s3cret",
    "--http-restricted-api=model-repository,model-config,shared-memory:tuner-key=s3cret",
]


def test_docker_run_command_has_gpu_ports_mount_and_explicit_mode() -> None:
    cmd = docker_run_command(
        image="nvcr.io/nvidia/tritonserver:24.10-py3", name="tuner-triton-abc", repository=Path("/w/repository"),
        ports=PORTS, access=ACCESS, address="127.0.0.1", gpu="2", docker="/usr/bin/docker",
        extra_args=["--ulimit", "memlock=-1"], label="/w/server",
    )
    assert cmd == [
        "/usr/bin/docker", "run", "--rm", "--name", "tuner-triton-abc", "--label", "tuner.workdir=/w/server",
        "--shm-size=1g", "--gpus", "device=2",
        "--publish", "127.0.0.1:18000:8000", "--publish", "127.0.0.1:18001:8001", "--publish", "127.0.0.1:18002:8002",
        "--volume", "/w/repository:/models:ro", "--ulimit", "memlock=-1",
        "nvcr.io/nvidia/tritonserver:24.10-py3",
        "tritonserver", "--model-repository=/models", "--model-control-mode=explicit",
        "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002", "--log-info=true", "--exit-timeout-secs=10",
        *RESTRICTIONS,
    ]


def test_docker_without_gpu_asks_for_none() -> None:
    cmd = docker_run_command(image="img", name="n", repository=Path("/r"), ports=PORTS, access=ACCESS)
    assert "--gpus" not in cmd
    assert cmd[0] == "docker" and cmd.index("img") > cmd.index("--volume")


@pytest.mark.parametrize(("visible", "flag"), [
    ("0", "device=0"), ("3", "device=3"), ("0,1", '"device=0,1"'), (" 1 , 2 ", '"device=1,2"'),
    ("GPU-8c9a1f2e", "device=GPU-8c9a1f2e"),
])
def test_gpu_flag(visible: str, flag: str) -> None:
    assert gpu_flag(visible) == flag


def test_docker_stop_and_remove_commands() -> None:
    assert docker_stop_command("c", 15.0) == ["docker", "stop", "--time", "15", "c"]
    assert docker_stop_command("c", 0.2, docker="podman") == ["podman", "stop", "--time", "1", "c"]
    assert docker_remove_command("c") == ["docker", "rm", "--force", "c"]


def test_container_name_is_stable_per_folder(tmp_path: Path) -> None:
    assert container_name(tmp_path / "a") == container_name(tmp_path / "a")
    assert container_name(tmp_path / "a") != container_name(tmp_path / "b")
    assert container_name(tmp_path / "a").startswith("tuner-triton-")


def test_local_command() -> None:
    binary = Path("/opt/tritonserver/bin/tritonserver")
    cmd = local_command(binary, Path("/w/repo"), "0.0.0.0", PORTS, access=ACCESS)
    assert cmd[:2] == ["/opt/tritonserver/bin/tritonserver", "--model-repository=/w/repo"]
    assert not any(a.startswith("--backend-directory") for a in cmd)
    assert {"--model-control-mode=explicit", "--http-address=0.0.0.0", "--grpc-port=18001", "--metrics-port=18002"} <= set(cmd)
    with_backends = local_command(Path("/t"), Path("/w/repo"), "127.0.0.1", PORTS, Path("/b"), access=ACCESS)
    assert "--backend-directory=/b" in with_backends
    assert cmd[-2:] == with_backends[-2:] == RESTRICTIONS


def test_servers_for_configs_the_tuner_wrote_whole_run_without_auto_completion(tmp_path: Path) -> None:
    flag = "--disable-auto-complete-config"
    assert flag not in local_command(Path("/t"), Path("/r"), "127.0.0.1", PORTS, access=ACCESS)
    assert flag in local_command(Path("/t"), Path("/r"), "127.0.0.1", PORTS, access=ACCESS, whole_configs=True)
    docker = docker_run_command(image="img", name="n", repository=Path("/r"), ports=PORTS, access=ACCESS,
                                whole_configs=True)
    assert flag in docker[docker.index("tritonserver"):]
    binary = tmp_path / "tritonserver"
    binary.write_text("")
    for settings in (ServerSettings(), ServerSettings(launch="local", binary=binary), ServerSettings(launch="docker")):
        made = make_server(settings, tmp_path / "server", tmp_path / "repo", whole_configs=True)
        assert isinstance(made, ProcessServer) and made.whole_configs, settings.launch
        assert not make_server(settings, tmp_path / "server", tmp_path / "repo").whole_configs


def test_make_server_picks_the_mode(tmp_path: Path) -> None:
    binary = tmp_path / "tritonserver"
    binary.write_text("")
    work, repo = tmp_path / "server", tmp_path / "repo"

    embedded = make_server(ServerSettings(), work, repo)
    assert isinstance(embedded, EmbeddedServer) and not embedded.native and embedded.pid is None

    local = make_server(ServerSettings(launch="local", binary=binary), work, repo)
    assert isinstance(local, LocalServer) and local.native and local.binary == binary
    runner = make_server(ServerSettings(launch="local", binary=binary, triton_backend="python"), work, repo)
    assert not runner.native

    docker = make_server(
        ServerSettings(launch="docker", http_port=9000, grpc_port=9001, metrics_port=9002, docker_args=["--ipc=host"]),
        work, repo, gpu="1",
    )
    assert isinstance(docker, DockerServer) and docker.native and docker.pid is None
    assert (docker.image, docker.gpu, docker.extra_args, docker.fixed_ports) == (
        DEFAULT_IMAGE, "1", ("--ipc=host",), Ports(9000, 9001, 9002)
    )

    settings = ServerSettings(launch="remote", remote=["a:8000", {"http": "http://b:9000/", "grpc": "b:9001"}])
    first, second = (make_server(settings, work, repo, index=i) for i in (0, 1))
    assert isinstance(first, RemoteServer) and first.native and first.pid is None
    assert (first.http_url, first.grpc_url) == ("a:8000", "a:8001")
    assert (second.http_url, second.grpc_url) == ("b:9000", "b:9001")


def test_worker_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert worker_gpus() == "2"
    for nothing in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", nothing)
        assert worker_gpus() is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert worker_gpus() is None


def test_check_launch_names_a_missing_docker_client() -> None:
    settings = ServerSettings(launch="docker", docker_binary="no-such-docker-client")
    with pytest.raises(ConfigError, match="server.docker_binary"):
        check_launch(settings)
    check_launch(settings, workers_here=False)  # the workers' machines have it, not this one
    check_launch(ServerSettings())


def test_load_request_sends_the_config_and_the_version_files(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "1" / "sub").mkdir(parents=True)
    (folder / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 4\nbackend: "python"\n')
    (folder / "1" / "model.onnx").write_bytes(b"onnx")
    (folder / "1" / "model.py").write_bytes(b"py")
    (folder / "1" / "sub" / "extra.bin").write_bytes(b"x")
    (folder / "notes.txt").write_text("not a version folder")
    config, files = load_request(tmp_path, "m")
    assert json.loads(config) == {"name": "m", "max_batch_size": 4, "backend": "python"}
    assert files == {"file:1/model.onnx": b"onnx", "file:1/model.py": b"py", "file:1/sub/extra.bin": b"x"}


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An executable standing in for the docker client, and the file its calls go to."""
    client = tmp_path / "bin" / "docker"
    client.parent.mkdir()
    client.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_docker.py").read_text())
    client.chmod(client.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_DOCKER_CALLS", str(calls))
    return client, calls


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_docker_container_is_removed_after_a_clean_run(tmp_path: Path, fake_docker: tuple[Path, Path]) -> None:
    client, calls = fake_docker
    server = DockerServer(tmp_path / "server", tmp_path / "repo", image="img", docker=str(client), gpu="0")
    with server:
        assert server.is_ready() and server.pid is None
        name = server.name
    assert not server.is_alive()
    verbs = [call[0] for call in _calls(calls)]
    assert verbs == ["rm", "run", "stop", "rm"]  # a stale one removed, run, stopped, removed
    run = _calls(calls)[1]
    assert run[run.index("--name") + 1] == name and run[run.index("--gpus") + 1] == "device=0"
    assert not (calls.parent / f"{name}.pid").exists()


def test_docker_container_restricts_with_a_secret_drawn_at_each_start(
    tmp_path: Path, fake_docker: tuple[Path, Path]
) -> None:
    client, calls = fake_docker
    server = DockerServer(tmp_path / "server", tmp_path / "repo", image="img", docker=str(client))
    secrets = []
    for _ in range(2):
        with server:
            access = server.access
            assert access is not None and access.key == "tuner-key" and len(access.value) >= 32
            secrets.append(access.value)
        run = [call for call in _calls(calls) if call[0] == "run"][-1]
        assert run[-2:] == access.server_args()
        assert access.value not in server.log_path.read_text()
    assert secrets[0] != secrets[1]


def test_docker_container_is_removed_when_it_never_gets_ready(
    tmp_path: Path, fake_docker: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, calls = fake_docker
    monkeypatch.setenv("FAKE_DOCKER_READY", "0")
    server = DockerServer(tmp_path / "server", tmp_path / "repo", image="img", docker=str(client), startup_timeout_s=2)
    with pytest.raises(ServerStartError, match="not ready"):
        server.start()
    assert [call[0] for call in _calls(calls)] == ["rm", "run", "stop", "rm"]
    assert not server.is_alive()
    assert "fake container" in server.log_tail()


def test_remote_header_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ServerSettings(launch="remote", remote=["a:8000"])
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_VALUE, raising=False)
    assert make_server(settings, tmp_path, tmp_path).access is None
    monkeypatch.setenv(ENV_KEY, "ops-key")
    monkeypatch.setenv(ENV_VALUE, "from-the-operator")
    assert make_server(settings, tmp_path, tmp_path).access == Access("ops-key", "from-the-operator")
    check_launch(settings)
    monkeypatch.setenv(ENV_KEY, "has space")
    with pytest.raises(ConfigError, match=ENV_KEY) as refused:
        check_launch(settings)
    assert "from-the-operator" not in str(refused.value)


def test_remote_endpoint_accepts_a_string() -> None:
    assert RemoteEndpoint.model_validate("h:1") == RemoteEndpoint(http="h:1")
