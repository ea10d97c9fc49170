"""The Triton server a worker tunes on: one interface, four ways to run it.

    server = make_server(settings, workdir, repository, gpu="0")
    with server:                     # start(): until ready
        server.load("model")         # ModelLoadError carries Triton's own message
        ...
        server.unload("model")
    # stop(): nothing it started is left running

| launch     | class          | config form            | ``pid``   | limits                                          |
| ---------- | -------------- | ---------------------- | --------- | ----------------------------------------------- |
| embedded   | EmbeddedServer | python-backend runner  | the server| the wheel's Triton: python backend, CPU ONNX RT |
| local      | LocalServer    | onnxruntime backend    | the server| needs a full tritonserver on this machine       |
| docker     | DockerServer   | onnxruntime backend    | None      | needs a Docker engine (and the NVIDIA runtime)  |
| remote     | RemoteServer   | onnxruntime backend    | None      | no CPU use or log of the server; shares it      |

(``triton_backend: python`` in the study file runs the runner on any of them.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict

from typing_extensions import Self

from tuner.errors import ConfigError
from tuner.triton._access import Access
from tuner.triton._docker import DEFAULT_IMAGE, DockerServer
from tuner.triton._embedded import EmbeddedServer, pytriton_libs, pytriton_root
from tuner.triton._local import LocalServer
from tuner.triton._ports import Ports, free_port, free_ports, port_is_free
from tuner.triton._process import kill_orphans
from tuner.triton._remote import RemoteServer

if TYPE_CHECKING:
    from tuner.config import ServerSettings

__all__ = [
    "DEFAULT_IMAGE",
    "Access",
    "DockerServer",
    "EmbeddedServer",
    "LocalServer",
    "Ports",
    "RemoteServer",
    "TritonServer",
    "check_launch",
    "free_port",
    "free_ports",
    "kill_orphans",
    "make_server",
    "port_is_free",
    "pytriton_libs",
    "pytriton_root",
    "worker_gpus",
]


class TritonServer(Protocol):
    """One Triton server, in explicit model-control mode, that a worker loads its configs into.

    Contract (one worker drives a server from one thread; tests/contracts runs one suite against
    every launch mode):

    - ``start()`` returns once the server answers ready, or raises ServerStartError with nothing
      left running; on a started server it does nothing; after ``stop()`` it starts it again.
    - ``stop()`` never raises and may be called twice, or before ``start()``; afterwards
      ``is_alive()`` is False, nothing it started runs (processes, containers) and, on a server
      it did not start, the models it loaded are unloaded. ``load``, ``unload`` and
      ``model_statistics`` on a stopped server raise ServerStartError.
    - ``load(name)`` loads or reloads model ``name`` as the worker's repository folder
      ``repository/name`` has it (config.pbtxt and version folders) and returns once it is ready.
      ModelLoadError: Triton refused it (Triton's message); ServerStartError: the server is gone.
    - ``unload(name)`` unloads that model only and waits until its instances are gone; it logs
      Triton's refusal rather than raising, and raises ServerStartError when the server is gone.
    - ``is_alive()``: the server is still there (cheap); ``is_ready()``: it answers ready.
    - ``model_statistics(name)``: Triton's statistics of the model, as its HTTP API gives them.
    - ``http_url``, ``grpc_url``: ``host:port`` for clients on this machine, once started.
    - ``access``: the header every client of the server must send for its model-repository,
      model-config and shared-memory protocols (tuner.triton._access: ``with_access`` for a
      tritonclient, ``perf_analyzer_args`` for perf_analyzer), or None where the server restricts
      nothing. A server the tuner starts draws a new secret at each ``start()``, so clients made
      before a restart must be made again; a remote server's comes from the environment.
    - ``pid``: the server's process on this machine, whose tree does all its work (python backend
      stubs included), or None where its processes cannot be seen (docker, remote).
    - ``native``: True when the server runs ONNX models with its onnxruntime backend (configs from
      build_native_config, the version folder holds model.onnx), False through the python-backend
      runner (build_model_config, with the runner's model.py beside model.onnx).
    - ``last_error()``: one line saying what went wrong last; ``log_tail(lines)``: the server's
      last log lines (or the errors it answered, where its log is out of reach).
    """

    native: bool

    @property
    def pid(self) -> int | None: ...

    @property
    def access(self) -> Access | None: ...

    @property
    def http_url(self) -> str: ...

    @property
    def grpc_url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...

    def is_ready(self) -> bool: ...

    def load(self, model_name: str) -> None: ...

    def unload(self, model_name: str) -> None: ...

    def model_statistics(self, model_name: str) -> dict: ...

    def last_error(self) -> str: ...

    def log_tail(self, lines: int = 20) -> str: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class _CommonArgs(TypedDict):
    """What the local, docker and embedded servers take alike."""

    address: str
    ports: Ports | None
    startup_timeout_s: float
    whole_configs: bool


def worker_gpus() -> str | None:
    """The GPUs given to this process (CUDA_VISIBLE_DEVICES, which Ray sets for its actors), or None."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return value if value and value not in ("-1", "NoDevFiles") else None


def make_server(
    settings: ServerSettings,
    workdir: Path,
    repository: Path,
    *,
    gpu: str | None = None,
    index: int = 0,
    whole_configs: bool = False,
) -> TritonServer:
    """The server ``settings.launch`` asks for.

    Args:
        settings: The study file's ``server`` section.
        workdir: The server's own folder (its log, backend copy); names a docker container.
        repository: The worker's model repository, which the worker writes.
        gpu: The worker's GPUs (as CUDA_VISIBLE_DEVICES lists them) for a docker container; None: no GPU.
        index: The worker's index, which picks its server among ``settings.remote``.
        whole_configs: Every config the server loads is written whole by the tuner, so a server
            the tuner starts runs without Triton's auto-completion (tuner.triton._process.server_flags);
            a remote server runs as its owner started it.
    """
    ports = None
    if settings.http_port is not None:
        ports = Ports(settings.http_port, settings.grpc_port or 0, settings.metrics_port or 0)
    common: _CommonArgs = {
        "address": settings.address,
        "ports": ports,
        "startup_timeout_s": settings.startup_timeout_s,
        "whole_configs": whole_configs,
    }
    if settings.launch == "local":
        assert settings.binary is not None  # ServerSettings requires it for local
        return LocalServer(settings.binary, workdir, repository, settings.backend_directory, settings.native, **common)
    if settings.launch == "docker":
        return DockerServer(
            workdir,
            repository,
            image=settings.image or DEFAULT_IMAGE,
            docker=settings.docker_binary or "docker",
            extra_args=settings.docker_args,
            gpu=gpu,
            native=settings.native,
            **common,
        )
    if settings.launch == "remote":
        endpoint = settings.remote[index % len(settings.remote)]
        return RemoteServer(
            endpoint.http,
            repository,
            endpoint.grpc,
            settings.native,
            settings.startup_timeout_s,
            access=Access.from_environment(),
        )
    return EmbeddedServer(workdir, repository, **common)


def check_launch(settings: ServerSettings, workers_here: bool = True) -> None:
    """Raises what starting the servers would raise for want of a program, before anything starts.

    Args:
        settings: The study file's ``server`` section.
        workers_here: The workers run on this machine (not on a Ray cluster's other nodes),
            so the docker client must be here too.

    Raises:
        ConfigError: the docker client is missing (naming the field), or a remote server's header
            in the environment is malformed (naming the variable).
        ServerStartError: the embedded server's wheel is missing.
    """
    if settings.launch == "remote":
        Access.from_environment()
    elif settings.launch == "embedded":
        pytriton_root()
    elif settings.launch == "docker" and workers_here:
        docker = settings.docker_binary or "docker"
        if shutil.which(docker) is None:
            raise ConfigError(f"server.docker_binary: no docker client {docker!r} on PATH")
