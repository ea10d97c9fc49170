"""Triton in a container: ``docker run`` of NVIDIA's Triton image on this machine.

    server = DockerServer(workdir, repository, gpu="0")   # nvcr.io/nvidia/tritonserver:24.10-py3

The container gets the worker's GPU (``--gpus device=N``; none on a CPU worker), publishes its
three ports on ``address`` of this machine, and mounts the worker's model repository read-only
at /models. Models run on the image's onnxruntime backend (``native`` True).

The container is named after the worker's folder and labelled with it. It is stopped and removed
on every exit path the tuner sees: stop(), a server that never became ready, and the next start
in the same folder (which removes a container a killed tuner left behind). Only a tuner killed
outright leaves it running until then; ``docker ps --filter label=tuner.workdir`` lists such ones.

Limits: the server's processes are inside the container, so ``pid`` is None and their CPU use is
not measured; nothing from the tuner's environment is passed into the container; the image is
pulled by ``docker run`` when missing, which counts against the start-up timeout (pull it first).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tuner.triton._access import Access
from tuner.triton._ports import Ports
from tuner.triton._process import ProcessServer, server_flags

logger = logging.getLogger(__name__)

#: Triton 2.51, the release of the embedded server, with its native backends.
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
#: Where the worker's repository is mounted, and the ports Triton listens on, inside the container.
CONTAINER_REPOSITORY = "/models"
CONTAINER_PORTS = Ports(http=8000, grpc=8001, metrics=8002)
LABEL = "tuner.workdir"


def container_name(workdir: Path) -> str:
    """The container name of the worker whose server folder is ``workdir`` (the same on every start)."""
    return "tuner-triton-" + hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:12]


def gpu_flag(gpu: str) -> str:
    """``--gpus`` value for the GPUs ``gpu`` (indices or UUIDs, comma-separated, as CUDA_VISIBLE_DEVICES lists them)."""
    devices = ",".join(part.strip() for part in gpu.split(",") if part.strip())
    # docker reads the value as CSV: a list of devices needs quotes around the whole field
    return f'"device={devices}"' if "," in devices else f"device={devices}"


def docker_run_command(
    *,
    image: str,
    name: str,
    repository: Path,
    ports: Ports,
    access: Access,
    address: str = "127.0.0.1",
    gpu: str | None = None,
    docker: str = "docker",
    extra_args: Sequence[str] = (),
    label: str = "",
    whole_configs: bool = False,
) -> list[str]:
    """The ``docker run`` command line of one Triton container (in the foreground: its output is the server's log).

    Args:
        image: The Triton image.
        name: The container's name.
        repository: The model repository on this machine, mounted read-only.
        ports: The ports on this machine that Triton's HTTP, gRPC and metrics ports are published on.
        access: The header Triton's model-changing protocols ask for (see tuner.triton._access).
        address: The address of this machine they are published on.
        gpu: The GPUs of the worker (as CUDA_VISIBLE_DEVICES lists them); None runs without GPUs.
        docker: The docker client.
        extra_args: More ``docker run`` options, put before the image.
        label: Value of the container's ``tuner.workdir`` label.
        whole_configs: Every config it loads is written whole by the tuner (``server_flags``).
    """
    cmd = [docker, "run", "--rm", "--name", name, "--label", f"{LABEL}={label}", "--shm-size=1g"]
    if gpu:
        cmd += ["--gpus", gpu_flag(gpu)]
    for host_port, container_port in zip(
        (ports.http, ports.grpc, ports.metrics), (CONTAINER_PORTS.http, CONTAINER_PORTS.grpc, CONTAINER_PORTS.metrics)
    ):
        cmd += ["--publish", f"{address}:{host_port}:{container_port}"]
    cmd += ["--volume", f"{repository}:{CONTAINER_REPOSITORY}:ro", *extra_args, image]
    return [
        *cmd,
        "tritonserver",
        f"--model-repository={CONTAINER_REPOSITORY}",
        "--model-control-mode=explicit",
        f"--http-port={CONTAINER_PORTS.http}",
        f"--grpc-port={CONTAINER_PORTS.grpc}",
        f"--metrics-port={CONTAINER_PORTS.metrics}",
        *server_flags(access, whole_configs=whole_configs),
    ]


def docker_stop_command(name: str, timeout_s: float, docker: str = "docker") -> list[str]:
    return [docker, "stop", "--time", str(max(1, round(timeout_s))), name]


def docker_remove_command(name: str, docker: str = "docker") -> list[str]:
    return [docker, "rm", "--force", name]


class DockerServer(ProcessServer):
    """A Triton container run in the foreground by the docker client, which is this object's child process.

    Args:
        workdir: Folder for the server's log; names the container.
        repository: The model repository on this machine (mounted read-only).
        image: The Triton image.
        docker: The docker client (name on PATH or path).
        extra_args: More ``docker run`` options (e.g. ``--ulimit memlock=-1``, a ``--network``).
        gpu: The worker's GPUs, as CUDA_VISIBLE_DEVICES lists them; None runs without GPUs.
        native: True when models run on the onnxruntime backend, False through the python runner
            (which needs an image whose Python has numpy and onnxruntime).
        address: Address of this machine the ports are published on.
        ports: Fixed ports; free ones are found at start when None.
        startup_timeout_s: How long to wait for the server to become ready.
        whole_configs: Every config it loads is written whole by the tuner (``server_flags``).
    """

    def __init__(
        self,
        workdir: Path,
        repository: Path,
        image: str = DEFAULT_IMAGE,
        docker: str = "docker",
        extra_args: Sequence[str] = (),
        gpu: str | None = None,
        native: bool = True,
        address: str = "127.0.0.1",
        ports: Ports | None = None,
        startup_timeout_s: float = 60.0,
        whole_configs: bool = False,
    ) -> None:
        super().__init__(workdir, repository, address, ports, startup_timeout_s, whole_configs=whole_configs)
        self.image = image
        self.docker = docker
        self.extra_args = tuple(extra_args)
        self.gpu = gpu
        self.native = native
        self.name = container_name(self.workdir)

    @property
    def pid(self) -> int | None:
        """None: the server runs inside the container, out of this machine's process tree."""
        return None

    def start(self) -> None:
        if not self.is_alive():
            self._docker(docker_remove_command(self.name, self.docker), timeout_s=30)  # one a killed tuner left
        super().start()

    def _command(self) -> list[str]:
        return docker_run_command(
            image=self.image,
            name=self.name,
            repository=self.repository,
            ports=self._started_ports(),
            access=self._started_access(),
            address=self.address,
            gpu=self.gpu,
            docker=self.docker,
            extra_args=self.extra_args,
            label=str(self.workdir),
            whole_configs=self.whole_configs,
        )

    def _describe(self) -> str:
        return f"container {self.name} ({self.image})"

    def _terminate(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Stops the container (Triton's own graceful exit), then the client, then removes the container."""
        self._docker(docker_stop_command(self.name, timeout_s, self.docker), timeout_s=timeout_s + 15)
        super()._terminate(process, timeout_s=5)
        self._docker(docker_remove_command(self.name, self.docker), timeout_s=30)

    def _docker(self, cmd: list[str], timeout_s: float) -> None:
        """Runs a docker command whose failure is not an error (e.g. removing a container that is gone)."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False, env=self._environment())
            if done.returncode != 0 and b"No such container" not in done.stderr:
                logger.debug("%s: %s", " ".join(cmd), done.stderr.decode(errors="replace").strip())
