"""The ``server`` and ``workers`` sections: how Triton runs and how many workers measure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuner.config._base import _resolve, _Strict
from tuner.config._limits import MAX_CPUS_PER_WORKER, MAX_GPUS_PER_WORKER, MAX_TIMEOUT_S, MAX_WORKERS

_HOST_PORT = re.compile(r"^(http://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}/?$")


class RemoteEndpoint(_Strict):
    """One Triton server of ``launch: remote``: ``host:port`` of its HTTP and gRPC endpoints.

    Given as a string, it is the HTTP endpoint; gRPC left out is the same host at port 8001.
    """

    http: str
    grpc: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"http": value} if isinstance(value, str) else value

    @field_validator("http", "grpc")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None and not _HOST_PORT.match(value.strip()):
            raise ValueError(f"expected host:port or http://host:port, got {value!r}")
        return value


#: Fields of ServerSettings that only one launch mode uses.
_MODE_FIELDS = {
    "binary": "local",
    "backend_directory": "local",
    "image": "docker",
    "docker_binary": "docker",
    "docker_args": "docker",
    "remote": "remote",
}


class ServerSettings(_Strict):
    """How each worker runs Triton (tuner.triton.make_server builds it).

    ``launch``: ``embedded`` (the nvidia-pytriton wheel's tritonserver, python backend only),
    ``local`` (the tritonserver at ``binary``, e.g. in NVIDIA's container), ``docker`` (a
    container of ``image`` per worker, on the worker's GPU) or ``remote`` (the servers at
    ``remote``, one per worker, in explicit model-control mode). ``triton_backend`` picks the
    config form: ``onnxruntime`` (the native backend; default except for embedded) or ``python``
    (the tuner's ONNX Runtime runner model). Ports and ``address`` are this machine's (the
    published ports for docker); remote servers have their own.
    """

    launch: Literal["embedded", "local", "docker", "remote"] = "embedded"
    address: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    grpc_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    startup_timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 60.0
    triton_backend: Literal["onnxruntime", "python"] | None = None
    binary: Path | None = Field(default=None, validate_default=True)
    backend_directory: Path | None = None
    image: str | None = None
    docker_binary: str | None = None
    docker_args: list[str] = []
    remote: list[RemoteEndpoint] = Field(default=[], validate_default=True, max_length=MAX_WORKERS)

    @property
    def native(self) -> bool:
        """True when models run on Triton's onnxruntime backend, False through the python-backend runner."""
        if self.triton_backend is not None:
            return self.triton_backend == "onnxruntime"
        return self.launch != "embedded"

    @property
    def shares_memory(self) -> bool:
        """True when the server's /dev/shm is the workers' own: a server on their host, outside a private IPC namespace."""
        return self.launch in ("embedded", "local") or (self.launch == "docker" and "--ipc=host" in self.docker_args)

    @field_validator("binary", "backend_directory", "image", "docker_binary", "docker_args", "remote")
    @classmethod
    def _used_by_launch(cls, value: Any, info: ValidationInfo) -> Any:
        launch, field = info.data.get("launch"), info.field_name or ""
        mode = _MODE_FIELDS[field]
        if launch is None:  # launch itself is invalid: reported there
            return value
        if value and launch != mode:
            raise ValueError(f"only used with launch: {mode} (launch is {launch})")
        if launch == mode and field == "binary":
            if value is None:
                raise ValueError("launch: local needs the path of the tritonserver executable")
            path = _resolve(value, info)
            if not path.is_file():
                raise ValueError(f"{path} is not an existing file")
            return path
        if launch == mode and field == "backend_directory" and value is not None:
            path = _resolve(value, info)
            if not path.is_dir():
                raise ValueError(f"{path} is not an existing folder")
            return path
        if launch == mode and field == "remote" and not value:
            raise ValueError("launch: remote needs the server's URL (host:port), one per worker")
        return value

    @field_validator("remote", mode="before")
    @classmethod
    def _one_url(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, Mapping)) else value

    @field_validator("triton_backend")
    @classmethod
    def _embedded_has_python_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "onnxruntime" and info.data.get("launch") == "embedded":
            raise ValueError("the embedded server has the python backend only: use python, or launch local or docker")
        return value

    @field_validator("http_port", "grpc_port", "metrics_port")
    @classmethod
    def _ports_are_this_machines(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("launch") == "remote":
            raise ValueError("launch: remote uses the ports of the servers in server.remote")
        return value

    @model_validator(mode="after")
    def _ports_all_or_none(self) -> ServerSettings:
        given = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p is not None]
        if given and len(given) != 3:
            raise ValueError("give all of http_port, grpc_port and metrics_port, or none")
        if len(set(given)) != len(given):
            raise ValueError("http_port, grpc_port and metrics_port must differ")
        return self


class WorkerSettings(_Strict):
    """How many workers, what each may use, and where they run.

    Left out: one worker per GPU where there are GPUs, else one worker; the cores are shared
    equally among the workers.

    ``backend: ray`` runs each worker as a Ray actor (a local Ray, or the cluster at
    ``ray_address``); ``local`` runs the one worker inside the tuner's own process.
    """

    backend: Literal["ray", "local"] = "ray"
    count: Annotated[int, Field(ge=1, le=MAX_WORKERS)] | None = None
    cpus_per_worker: Annotated[int, Field(ge=1, le=MAX_CPUS_PER_WORKER)] | None = None
    gpus_per_worker: Annotated[float, Field(ge=0, le=MAX_GPUS_PER_WORKER)] | None = None
    ray_address: str | None = None

    @model_validator(mode="after")
    def _local_is_one_worker(self) -> WorkerSettings:
        if self.backend == "local" and (self.count not in (None, 1) or self.ray_address or self.gpus_per_worker):
            raise ValueError("backend local runs one CPU worker in the tuner's process: use backend ray")
        return self
