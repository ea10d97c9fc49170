"""The embedded Triton server: the tritonserver binary shipped in the nvidia-pytriton wheel.

    server = EmbeddedServer(workdir, repository)
    with server:                     # start(): free ports, wait until ready
        server.load("model")         # ModelLoadError carries Triton's own message
        ...
        server.unload("model")
    # stop(): SIGTERM, then SIGKILL of the whole process group; nothing is left behind

The server runs in its own process group so that Ctrl-C reaches only the tuner, which then
stops the server; it also gets SIGKILL from the kernel if the tuner dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tuner.errors import ModelLoadError, ServerStartError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Ports:
    """The three ports of one server."""

    http: int
    grpc: int
    metrics: int


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free right now on ``host``.

    The sockets are held open together, so the kernel cannot hand out one port twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    return free_ports(1, host)[0]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


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


def _die_with_parent() -> None:
    """Runs in the child before exec: own process group, and SIGKILL when the parent dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_orphans(workdir: Path) -> int:
    """Kills this machine's processes started from ``workdir``'s backends (servers and stubs).

    For a server whose owner died without stopping it: the kernel kills the server itself
    (parent-death signal), but its python-backend stubs outlive it. Returns how many were killed.
    """
    import psutil

    marker = str(workdir.resolve())
    killed = 0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if marker in cmdline and ("triton_python_backend_stub" in cmdline or "tritonserver" in cmdline):
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed += 1
    return killed


class EmbeddedServer:
    """A tritonserver process from the nvidia-pytriton wheel, with its own ports and log.

    Args:
        workdir: Folder for the server's backend copy and its log file.
        repository: The model repository the server serves (explicit model control).
        address: Address all three endpoints bind to.
        ports: Fixed ports; free ones are found at start when None.
        startup_timeout_s: How long to wait for the server to become ready.
        env: Extra environment variables for the server process.
    """

    def __init__(
        self,
        workdir: Path,
        repository: Path,
        address: str = "127.0.0.1",
        ports: Ports | None = None,
        startup_timeout_s: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.repository = repository.resolve()
        self.address = address
        self.fixed_ports = ports
        self.ports: Ports | None = None
        self.startup_timeout_s = startup_timeout_s
        self.extra_env = dict(env or {})
        self.log_path = workdir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._client: triton_http.InferenceServerClient | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def grpc_url(self) -> str:
        assert self.ports is not None, "server not started"
        return f"{self.address}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        assert self.ports is not None, "server not started"
        return f"{self.address}:{self.ports.http}"

    def start(self) -> None:
        """Starts the server and waits until it is ready.

        Raises:
            ServerStartError: the binary is missing, a port is taken, or the server did not
                become ready within the timeout. The message ends with the log's last lines.
        """
        if self.is_alive():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repository.mkdir(parents=True, exist_ok=True)
        backends = self._backend_dir()
        self.ports = self.fixed_ports or Ports(*free_ports(3, self.address))
        cmd = [
            str(pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--log-info=true",
            "--exit-timeout-secs=10",
        ]
        logger.debug("starting %s", " ".join(cmd))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only setsid and prctl
                cwd=self.workdir,
            )
        self._client = triton_http.InferenceServerClient(self.http_url, network_timeout=120.0)
        self._wait_ready()
        logger.info("tritonserver pid %s ready on %s", self._process.pid, self.ports)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stops the server and every process it started (python backend stubs included)."""
        process, self._process = self._process, None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver pid %s did not stop in %.0f s; killing it", process.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stubs left in the group go too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    # -- models ----------------------------------------------------------------------------

    def load(self, model_name: str) -> None:
        """Loads (or reloads) a model of the repository.

        Raises:
            ModelLoadError: Triton refused the model; the message is Triton's.
            ServerStartError: the server is not running.
        """
        client = self._require_client()
        try:
            client.load_model(model_name)
        except InferenceServerException as exc:
            self._raise_if_dead()
            raise ModelLoadError(_clean_message(exc)) from exc

    def unload(self, model_name: str, timeout_s: float = 60.0) -> None:
        """Unloads a model and waits until its instances are gone."""
        client = self._require_client()
        try:
            client.unload_model(model_name)
        except InferenceServerException as exc:
            self._raise_if_dead()
            logger.warning("unload of %s failed: %s", model_name, _clean_message(exc))
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = {m.get("name"): m.get("state") for m in client.get_model_repository_index()}
            if states.get(model_name) != "READY" and states.get(model_name) != "UNLOADING":
                return
            time.sleep(0.05)
        logger.warning("model %s still unloading after %.0f s", model_name, timeout_s)

    def is_ready(self) -> bool:
        """True when the server answers that it is ready, within a couple of seconds."""
        if not self.is_alive() or self.ports is None:
            return False
        try:
            probe = triton_http.InferenceServerClient(self.http_url, connection_timeout=2.0, network_timeout=2.0)
            try:
                return bool(probe.is_server_ready())
            finally:
                probe.close()
        except Exception:  # noqa: BLE001 - any transport error means not ready
            return False

    def model_statistics(self, model_name: str) -> dict:
        return self._require_client().get_inference_statistics(model_name)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def last_error(self) -> str:
        """The last error line of the server's log (or its last line)."""
        lines = [line.strip() for line in self.log_tail(200).splitlines() if line.strip()]
        errors = [line for line in lines if re.match(r"E\d{4} ", line)]  # Triton's error lines: E1125 10:00:00...
        return (errors or lines or ["no log output"])[-1][:500]

    # -- internals -------------------------------------------------------------------------

    def _require_client(self) -> triton_http.InferenceServerClient:
        self._raise_if_dead()
        assert self._client is not None
        return self._client

    def _raise_if_dead(self) -> None:
        if not self.is_alive():
            code = self._process.poll() if self._process else None
            raise ServerStartError(f"tritonserver is not running (exit code {code}); log {self.log_path}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise ServerStartError(
                    f"tritonserver exited with code {code} while starting: {self.last_error()} (log: {self.log_path})"
                )
            fatal = self._fatal_start_error()
            if fatal:
                self.stop(timeout_s=2)
                raise ServerStartError(f"tritonserver could not start: {fatal} (log: {self.log_path})")
            if self.is_ready():
                return
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f} s: {self.last_error()} (log: {self.log_path})"
        )

    def _fatal_start_error(self) -> str | None:
        """A log line saying an endpoint could not start (e.g. its port is taken): the server
        keeps running without it, but would never become ready."""
        for line in self.log_tail(50).splitlines():
            if "failed to start" in line:
                return line.strip()[:500]
        return None

    def _backend_dir(self) -> Path:
        """A copy of the wheel's backends with the stub of the running Python put in place."""
        root = pytriton_root()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerStartError(f"the embedded Triton has no python backend stub for Python {version}")
        target = self.workdir / "backends"
        python_dir = target / "python"
        if not (python_dir / "triton_python_backend_stub").is_file():
            shutil.copytree(root / "backends", target, dirs_exist_ok=True)
            shutil.copy2(stub, python_dir / "triton_python_backend_stub")
        return target

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = str(pytriton_libs())
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libs, env.get("LD_LIBRARY_PATH", "")) if p)
        # The python backend stub imports numpy and onnxruntime from the environment whose
        # bin/ comes first on PATH: put the running interpreter's environment there.
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        env.update(self.extra_env)
        return env


def _clean_message(exc: InferenceServerException) -> str:
    message = exc.message() if hasattr(exc, "message") else str(exc)
    return (message or str(exc)).strip()
