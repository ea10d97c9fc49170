"""A Triton server that runs as a child process of the tuner: the base of the embedded, local and docker servers.

The process runs in its own process group so that Ctrl-C reaches only the tuner, which then
stops the server; it also gets SIGKILL from the kernel if the tuner dies without cleaning up.
Its output goes to ``workdir/tritonserver.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException
from typing_extensions import Self

from tuner.errors import ModelLoadError, ServerStartError
from tuner.triton._access import Access, redact, with_access
from tuner.triton._client import clean_message, probe_ready, wait_unloaded
from tuner.triton._ports import Ports, client_host, free_ports

if TYPE_CHECKING:
    import psutil

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: own process group, and SIGKILL when the parent dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


#: Watches a server's process group ($0) from outside its owner's children: it waits on a pipe
#: whose only writer is the owner, and when the pipe closes without "stop" (the owner died, by
#: whatever signal), it kills the whole group. The kernel kills the server itself (parent-death
#: signal), but not the python backend's stubs in its group, which would otherwise run on until
#: their own check of the server times out (30 s and more). The watcher runs in the background
#: of a shell that exits at once, so that it is nobody's child: an owner's runtime that kills its
#: children on the way out (Ray's workers do) cannot take it before it acts.
_GROUP_GUARD = 'exec 3<&0; (read -r line <&3; [ "$line" = stop ] || kill -KILL -$0 2>/dev/null) &'


class GroupGuard:
    """Kills process group ``pgid`` when this process dies, however it dies (see ``_GROUP_GUARD``).

    ``stop`` stands it down, for a group stopped the usual way. Where there is no ``sh``, there is
    no guard: the group's stubs then outlive a killed owner until cleaned up (``kill_orphans``).
    """

    def __init__(self, pgid: int) -> None:
        read_end, self._write_end = os.pipe()  # neither end is inherited by later children
        try:
            shell = subprocess.Popen(
                ["sh", "-c", _GROUP_GUARD, str(pgid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # no terminal's signal reaches it
            )
        except OSError as exc:
            logger.debug("no guard for process group %d: %s", pgid, exc)
            os.close(self._write_end)
            self._write_end = -1
        else:
            shell.wait()  # it exits once the watcher runs
        finally:
            os.close(read_end)

    def stop(self) -> None:
        """Stands the watcher down (it exits without killing anything)."""
        if self._write_end < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"stop\n")
        os.close(self._write_end)
        self._write_end = -1


#: Programs a worker's server folder starts: the server, and the python backend's stubs.
_TRITON_PROGRAMS = frozenset({"tritonserver", "triton_python_backend_stub"})


def kill_orphans(workdir: Path) -> int:
    """Kills this machine's Triton processes started from ``workdir`` (servers and stubs).

    For a server whose owner died without stopping it: the kernel kills the server itself
    (parent-death signal) and its group's guard the stubs (``GroupGuard``), but a guard that
    could not start, or a machine that rebooted mid-kill, can leave some. Returns how many were
    killed; they are gone when it returns (or a warning says which is not, after 5 s).
    """
    import psutil

    killed = []
    for process in triton_processes(workdir):
        with contextlib.suppress(psutil.Error):
            process.kill()
            killed.append(process)
    # Polled, not waited for: waiting would reap a caller's own child behind its back.
    left, deadline = killed, time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [process for process in left if _running(process)]
    for process in left:
        logger.warning("process %d of %s did not exit after SIGKILL", process.pid, workdir)
    remove_shm_regions(workdir, below=True)
    return len(killed)


#: Where POSIX shared memory lives on Linux: the python backend's regions are files here.
SHM_FOLDER = Path("/dev/shm")


def shm_prefix(workdir: Path) -> str:
    """The name every python-backend shared-memory region of a server started from ``workdir`` begins with.

    The backend names its regions ``<prefix><uuid>`` and removes them when its server stops; a server
    killed (by SIGKILL, a trial's timeout, the machine's OOM killer) leaves them, 1 MiB or more each, in
    ``/dev/shm`` until the machine restarts. A prefix of the server's own folder lets what it left be
    found and removed (``remove_shm_regions``); one folder runs one server at a time.
    """
    return f"tuner_{hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:16]}_"


def remove_shm_regions(workdir: Path, below: bool = False) -> int:
    """Removes the python-backend shared-memory regions that servers started from ``workdir`` left (``below``:
    or from a folder under it, as a worker's server runs from its ``server`` folder); call it only while no
    server of those folders runs. Returns how many were removed."""
    folders = [workdir, *(p for p in workdir.rglob("*") if p.is_dir())] if below else [workdir]
    prefixes = tuple(shm_prefix(folder) for folder in folders)
    removed = 0
    for region in SHM_FOLDER.glob("tuner_*"):
        if not region.name.startswith(prefixes):
            continue
        with contextlib.suppress(OSError):
            region.unlink()
            removed += 1
    if removed:
        logger.info("removed %d shared-memory regions a server of %s left", removed, workdir)
    return removed


def restrict_shm_regions(workdir: Path) -> int:
    """Makes the python-backend regions of the server started from ``workdir`` readable by this user alone.

    The backend creates them 0644 whatever the umask (Boost.Interprocess sets the mode), so any user of
    the machine could read the tensors in flight. Its stubs have them open by the time a load returns,
    and an open region stays theirs whatever its mode; a region exists from its stub's start to this
    call, so another user polling ``/dev/shm`` could still open one in that window. Returns how many
    were changed."""
    changed = 0
    for region in SHM_FOLDER.glob(f"{shm_prefix(workdir)}*"):
        with contextlib.suppress(OSError):
            if region.lstat().st_mode & 0o077:
                region.chmod(0o600)
                changed += 1
    return changed


def remove_unmapped_regions(min_age_s: float = 60.0) -> int:
    """Removes this user's python-backend regions (``tuner_*``) that no process maps and that are older
    than ``min_age_s``: what servers killed with their owners left, whichever folder they ran from (one
    since removed included, which ``remove_shm_regions`` cannot name). A live server and its stubs map
    their regions for as long as they run; the age spares one created but not yet mapped. Regions of
    other users are theirs. Returns how many were removed."""
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            data = maps.read_bytes()
            if b"/dev/shm/tuner_" in data:
                mapped.update(m.decode() for m in re.findall(rb"/dev/shm/(tuner_\S+)", data))
    removed, now, uid = 0, time.time(), os.getuid()
    for region in SHM_FOLDER.glob("tuner_*"):
        with contextlib.suppress(OSError):
            status = region.lstat()
            if region.name in mapped or status.st_uid != uid or now - status.st_mtime < min_age_s:
                continue
            region.unlink()
            removed += 1
    if removed:
        logger.info("removed %d shared-memory regions that servers killed before they stopped left", removed)
    return removed


def _running(process: psutil.Process) -> bool:
    """True until the process has exited (a zombie has: it waits only for its parent to read it)."""
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def triton_processes(workdir: Path) -> list[psutil.Process]:
    """This machine's servers and python-backend stubs started from ``workdir``.

    A process is the folder's when its program is a Triton one and one of its arguments is a
    path at or under the folder, compared by whole path components: ``worker-1``'s are not
    ``worker-10``'s.
    """
    import psutil

    folder = workdir.resolve()
    found = []
    for process in psutil.process_iter(["cmdline"]):
        argv = process.info["cmdline"] or []
        if argv and Path(argv[0]).name in _TRITON_PROGRAMS and _started_from(argv, folder):
            found.append(process)
    return found


def _started_from(argv: list[str], folder: Path) -> bool:
    """True when an argument of ``argv`` (or an ``--option=`` value) is an absolute path at or under ``folder``.

    ``folder`` is resolved; the arguments are the tuner's own resolved paths, normalised without
    asking the file system (a process's arguments may name files that are gone).
    """
    for arg in argv:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("/") and Path(os.path.normpath(value)).is_relative_to(folder):
            return True
    return False


def exit_text(code: int) -> str:
    """How a process ended, from its return code (negative: the signal that ended it)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


def server_flags(access: Access, *, whole_configs: bool, shm_prefix: str | None = None) -> list[str]:
    """The options every tritonserver the tuner starts takes, on this machine or in a container.

    Args:
        access: The header the model-changing protocols ask for (see tuner.triton._access).
        whole_configs: Every config the server loads is written whole by the tuner (inputs,
            outputs, batch size), so Triton's auto-completion is turned off: it has nothing to add,
            and for each load of a python-backend model it started a stub only to ask the model
            for its config (1.2 s of the 1.4 s that loading digits_forest's runner took here).
        shm_prefix: The python backend's shared-memory regions are named with it (``shm_prefix``),
            where they are this machine's files; a container's ``/dev/shm`` goes with the container.
    """
    flags = ["--log-info=true", "--exit-timeout-secs=10", *access.server_args()]
    if whole_configs:
        flags.append("--disable-auto-complete-config")
    if shm_prefix is not None:
        flags.append(f"--backend-config=python,shm-region-prefix-name={shm_prefix}")
    return flags


class ProcessServer:
    """A Triton server started as a child process, serving ``repository`` in explicit model control.

    Subclasses give the command line (``_command``) and may change the environment, how the
    process is stopped, and which process the ``pid`` is.

    Args:
        workdir: Folder for the server's log (and whatever the subclass keeps there).
        repository: The model repository the server serves.
        address: Address all three endpoints bind to on this machine.
        ports: Fixed ports; free ones are found at start when None.
        startup_timeout_s: How long to wait for the server to become ready.
        env: Extra environment variables for the server process.
        whole_configs: Every config it loads is written whole by the tuner (``server_flags``).
    """

    #: Whether configs take the onnxruntime backend's own form (see tuner.triton._server.TritonServer).
    native = False

    def __init__(
        self,
        workdir: Path,
        repository: Path,
        address: str = "127.0.0.1",
        ports: Ports | None = None,
        startup_timeout_s: float = 60.0,
        env: dict[str, str] | None = None,
        whole_configs: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.repository = repository.resolve()
        self.address = address
        self.fixed_ports = ports
        self.ports: Ports | None = None
        self.startup_timeout_s = startup_timeout_s
        self.extra_env = dict(env or {})
        self.whole_configs = whole_configs
        self.log_path = self.workdir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._guard: GroupGuard | None = None
        self._access: Access | None = None
        self._client: triton_http.InferenceServerClient | None = None
        #: Where in the log this start's lines begin, and where they were when the server became ready.
        self._log_start = 0
        self._log_ready: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
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
    def access(self) -> Access | None:
        """The header the clients of the running server send: a secret drawn at each start."""
        return self._access

    @property
    def grpc_url(self) -> str:
        return f"{client_host(self.address)}:{self._started_ports().grpc}"

    @property
    def http_url(self) -> str:
        return f"{client_host(self.address)}:{self._started_ports().http}"

    def start(self) -> None:
        """Starts the server and waits until it is ready.

        Raises:
            ServerStartError: the binary is missing, a port is taken, or the server did not
                become ready within the timeout. The message ends with the log's last lines.
        """
        if self.is_alive():
            return
        if self._process is not None:  # it died on its own: what is left of its group goes, and its guard stands down
            self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repository.mkdir(parents=True, exist_ok=True)
        remove_unmapped_regions()
        self.ports = self.fixed_ports or Ports(*free_ports(3, client_host(self.address)))
        # A new secret at each start: one a stopped server's clients held opens nothing.
        self._access = Access.generate()
        cmd = self._command()
        logger.debug("starting %s", redact(" ".join(cmd), self._access))
        with self.log_path.open("ab") as log:
            self._log_start, self._log_ready = log.tell(), None
            try:
                self._process = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self._environment(),
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - only setsid and prctl
                    cwd=self.workdir,
                )
            except OSError as exc:
                raise ServerStartError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from exc
        self._guard = GroupGuard(self._process.pid)
        self._client = with_access(
            triton_http.InferenceServerClient(self.http_url, network_timeout=120.0), self._access
        )
        self._wait_ready()
        self._log_ready = self._log_size()
        logger.info("%s ready on %s", self._describe(), self.ports)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stops the server and every process it started (python backend stubs included)."""
        process, self._process = self._process, None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if process is not None:
            self._terminate(process, timeout_s)
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.stop()
        if process is not None:  # what a killed server's python backend could not remove
            remove_shm_regions(self.workdir)

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
            raise ModelLoadError(clean_message(exc)) from exc
        finally:  # a failed load may have started some of its stubs
            restrict_shm_regions(self.workdir)

    def unload(self, model_name: str, timeout_s: float = 60.0) -> None:
        """Unloads a model and waits until its instances are gone."""
        client = self._require_client()
        try:
            client.unload_model(model_name)
        except InferenceServerException as exc:
            self._raise_if_dead()
            logger.warning("unload of %s failed: %s", model_name, clean_message(exc))
            return
        wait_unloaded(client, model_name, timeout_s)

    def is_ready(self) -> bool:
        """True when the server answers that it is ready, within a couple of seconds."""
        return self.is_alive() and self.ports is not None and probe_ready(self.http_url)

    def model_statistics(self, model_name: str) -> dict:
        return self._require_client().get_inference_statistics(model_name)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines this start logged (the log file holds every start's)."""
        return "\n".join(self._log_lines(self._log_start, most=lines))

    def last_error(self) -> str:
        """How the server ended, where it has, and the last error line of its log since this start (or its
        last line). Once the server was ready, only what it logged after that counts: an error of its
        start-up (no GPU driver on a CPU machine, say) is not why a ready server went down."""
        lines = self._log_lines(self._log_ready if self._log_ready is not None else self._log_start)
        if self._log_ready is not None and not lines:
            lines = ["nothing logged since it became ready"]
        errors = [line for line in lines if re.match(r"E\d{4} ", line)]  # Triton's error lines: E1125 10:00:00...
        line = (errors or lines or ["no log output"])[-1][:500]
        code = self._process.poll() if self._process is not None else None
        return line if code is None else f"{exit_text(code)}; last log line: {line}"

    def _log_lines(self, offset: int, most: int = 200) -> list[str]:
        """The log's last non-empty lines from byte ``offset`` on."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines() if line.strip()][-most:]

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    # -- for subclasses --------------------------------------------------------------------

    def _command(self) -> list[str]:
        """The command line that runs the server on ``self.ports``."""
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env}

    def _describe(self) -> str:
        return f"tritonserver pid {self.pid}"

    def _terminate(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        """SIGTERM to the process group, then SIGKILL of the group (stubs left in it go too)."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", self._describe(), timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    # -- internals -------------------------------------------------------------------------

    def _started_ports(self) -> Ports:
        if self.ports is None:
            raise ServerStartError("the server has not been started")
        return self.ports

    def _started_access(self) -> Access:
        if self._access is None:
            raise ServerStartError("the server has not been started")
        return self._access

    def _require_client(self) -> triton_http.InferenceServerClient:
        self._raise_if_dead()
        assert self._client is not None  # set by start(), which is_alive() implies
        return self._client

    def _raise_if_dead(self) -> None:
        if not self.is_alive():
            raise ServerStartError(f"tritonserver is not running: {self.last_error()}; log {self.log_path}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                message = f"tritonserver ended while starting: {self.last_error()} (log: {self.log_path})"
                self.stop()
                raise ServerStartError(message)
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
        """A line this start logged saying an endpoint could not start (e.g. its port is taken): the
        server keeps running without it, but would never become ready. The log is appended to at
        every start, and an earlier start's line is not this one's."""
        for line in self._log_lines(self._log_start, most=50):
            if "failed to start" in line:
                return line[:500]
        return None
