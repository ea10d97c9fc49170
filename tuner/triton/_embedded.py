"""The embedded Triton server: the tritonserver binary shipped in the nvidia-pytriton wheel.

    server = EmbeddedServer(workdir, repository)
    with server:                     # start(): free ports, wait until ready
        server.load("model")         # ModelLoadError carries Triton's own message
        ...
        server.unload("model")
    # stop(): SIGTERM, then SIGKILL of the whole process group; nothing is left behind

It has the python backend only, so models run through the python-backend ONNX runner
(``native`` is False). No Docker and no GPU needed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from tuner.errors import ServerStartError
from tuner.triton._local import local_command
from tuner.triton._process import ProcessServer, shm_prefix


def pytriton_root() -> Path:
    """The folder of the Triton build inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("nvidia-pytriton is not installed: it provides the embedded tritonserver")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServerStartError(f"no tritonserver binary under {root}")
    return root


def pytriton_libs() -> Path:
    """The folder of the shared libraries that the nvidia-pytriton wheel bundles."""
    return pytriton_root().parent.parent / "nvidia_pytriton.libs"


def embedded_backends(target: Path) -> Path:
    """A copy of the wheel's backends in ``target``, with the stub of the running Python put in place."""
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerStartError(f"the embedded Triton has no python backend stub for Python {version}")
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").is_file():
        shutil.copytree(root / "backends", target, dirs_exist_ok=True)
        shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return target


def embedded_environment(base: dict[str, str]) -> dict[str, str]:
    """``base`` with what the wheel's tritonserver needs: its libraries, and this Python's packages for the stub."""
    env = dict(base)
    libs = str(pytriton_libs())
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libs, env.get("LD_LIBRARY_PATH", "")) if p)
    # The python backend stub imports numpy and onnxruntime from the environment whose
    # bin/ comes first on PATH: put the running interpreter's environment there.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class EmbeddedServer(ProcessServer):
    """A tritonserver process from the nvidia-pytriton wheel, with its own ports and log.

    Args:
        workdir: Folder for the server's backend copy and its log file.
        repository: The model repository the server serves (explicit model control).
        address: Address all three endpoints bind to.
        ports: Fixed ports; free ones are found at start when None.
        startup_timeout_s: How long to wait for the server to become ready.
        env: Extra environment variables for the server process.
    """

    native = False

    def _command(self) -> list[str]:
        binary = pytriton_root() / "bin" / "tritonserver"
        backends = embedded_backends(self.workdir / "backends")
        return local_command(
            binary,
            self.repository,
            self.address,
            self._started_ports(),
            backends,
            access=self._started_access(),
            whole_configs=self.whole_configs,
            shm_prefix=shm_prefix(self.workdir),
        )

    def _environment(self) -> dict[str, str]:
        return {**embedded_environment(dict(os.environ)), **self.extra_env}
