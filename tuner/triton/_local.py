"""A tritonserver binary on this machine, given by path: e.g. /opt/tritonserver/bin/tritonserver in NVIDIA's container.

    server = LocalServer(Path("/opt/tritonserver/bin/tritonserver"), workdir, repository)

A full Triton has its native backends, so by default models run on its onnxruntime backend
(``native`` True: configs in that backend's form, tuner.triton._model_config.build_native_config).
Pass ``native=False`` for a build with the python backend only (such as the nvidia-pytriton
wheel's binary), where models run through the python-backend ONNX runner.

The server is a child process in its own process group, stopped with everything it started, and
its ``pid`` is the server's, so its CPU use can be measured. Its backends' own dependencies (the
CUDA libraries, the python backend stub's packages) come from the tuner's environment and the
``env`` given.
"""

from __future__ import annotations

from pathlib import Path

from tuner.errors import ServerStartError
from tuner.triton._access import Access
from tuner.triton._ports import Ports
from tuner.triton._process import ProcessServer, server_flags, shm_prefix


class LocalServer(ProcessServer):
    """A tritonserver binary started as a child process.

    Args:
        binary: The tritonserver executable.
        workdir: Folder for the server's log.
        repository: The model repository the server serves (explicit model control).
        backend_directory: ``--backend-directory``; None keeps the binary's own default
            (/opt/tritonserver/backends).
        native: True when models run on the onnxruntime backend, False through the python runner.
        address: Address all three endpoints bind to.
        ports: Fixed ports; free ones are found at start when None.
        startup_timeout_s: How long to wait for the server to become ready.
        env: Extra environment variables for the server process.
        whole_configs: Every config it loads is written whole by the tuner (``server_flags``).
    """

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        repository: Path,
        backend_directory: Path | None = None,
        native: bool = True,
        address: str = "127.0.0.1",
        ports: Ports | None = None,
        startup_timeout_s: float = 60.0,
        env: dict[str, str] | None = None,
        whole_configs: bool = False,
    ) -> None:
        super().__init__(workdir, repository, address, ports, startup_timeout_s, env, whole_configs)
        self.binary = binary
        self.backend_directory = backend_directory
        self.native = native

    def _command(self) -> list[str]:
        if not self.binary.is_file():
            raise ServerStartError(f"no tritonserver binary at {self.binary}")
        return local_command(
            self.binary,
            self.repository,
            self.address,
            self._started_ports(),
            self.backend_directory,
            access=self._started_access(),
            whole_configs=self.whole_configs,
            shm_prefix=shm_prefix(self.workdir),
        )


def local_command(
    binary: Path,
    repository: Path,
    address: str,
    ports: Ports,
    backend_directory: Path | None = None,
    *,
    access: Access,
    whole_configs: bool = False,
    shm_prefix: str | None = None,
) -> list[str]:
    """The command line of a tritonserver serving ``repository`` in explicit model control on ``ports``,
    whose model-changing protocols ask for ``access``'s header (``server_flags`` gives the rest)."""
    cmd = [str(binary), f"--model-repository={repository}"]
    if backend_directory is not None:
        cmd.append(f"--backend-directory={backend_directory}")
    return [
        *cmd,
        "--model-control-mode=explicit",
        f"--http-address={address}",
        f"--grpc-address={address}",
        f"--metrics-address={address}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        *server_flags(access, whole_configs=whole_configs, shm_prefix=shm_prefix),
    ]
