"""Starting or joining Ray: a local Ray that only this machine can reach, or the cluster named.

A local Ray (no address) serves this machine's workers only, so every one of its servers (GCS,
raylet, object manager, workers, agents) binds to 127.0.0.1: Ray runs what its clients send
and unpickles what they return, so a Ray reachable from the network runs code for anyone who
reaches it. Ray 2.52 and later also turn token authentication on for a local Ray: its token
file (``~/.ray/auth_token``, which Ray writes with the process's umask) is kept to this user, its
folder 0700 before Ray starts and the file 0600 after. Ray makes its session folders (logs, sockets)
0777; a local Ray keeps them inside a folder only this user can enter.

A cluster (``workers.ray_address``) is joined as it is: it should run with token
authentication (``RAY_AUTH_MODE=token`` on every node and for the tuner; see the README).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.errors import TunerError

logger = logging.getLogger(__name__)

#: The address every server of a local Ray binds to.
LOOPBACK = "127.0.0.1"


def init_ray(address: str | None, num_cpus: int) -> None:
    """Joins the Ray cluster at ``address``, or starts a local Ray on loopback with ``num_cpus``.

    Raises:
        TunerError: Ray could not be started or joined.
    """
    import ray

    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    if address:
        kwargs["address"] = address
        starting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    else:
        # "local": a new Ray of its own, never one that `ray start` left on this machine (ray.init's
        # default joins the last one started here, whoever started it).
        kwargs.update(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK)
        kwargs["_temp_dir"] = str(private_temp_dir() / "ray")
        # Ray runs its workers at nice 15 by default; a worker's server and load generator inherit it, and a
        # fast model measured so read up to 1.7x what the same config does at nice 0, as a deployed server
        # (and `tuner verify`) runs it.
        kwargs["_system_config"] = {"worker_niceness": 0}
        starting = _loopback_node()
    try:
        with starting, keep_signal_handlers(), _private_token(local=not address):
            ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from ray.init
        raise TunerError(f"cannot start or join Ray ({address or 'local'}): {exc}") from exc


def private_temp_dir() -> Path:
    """This user's own folder for a local Ray's files: ``tuner-<uid>`` in the temporary folder Ray
    would use (``$RAY_TMPDIR``, else ``$TMPDIR``, else ``/tmp``), 0700.

    Ray makes its temporary folder and every session, log and socket folder in it 0777, so that the
    users of a machine can share ``/tmp/ray``: any of them could read a local Ray's logs and put files
    beside its sockets. Inside a folder no one else can enter, those modes reach no one.

    Raises:
        TunerError: the folder cannot be made, or is not a folder of this user's (a link, or another
            user's: made before this user's first run).
    """
    root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / f"tuner-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
            root.chmod(0o700)
            return root
    except OSError as exc:
        raise TunerError(f"cannot make a private folder for Ray's files at {root}: {exc}") from exc
    raise TunerError(f"{root} is not a folder of this user's: remove it, or set RAY_TMPDIR to a folder of your own")


@contextlib.contextmanager
def _private_token(local: bool) -> Iterator[None]:
    """Keeps the token a local Ray authenticates with to this user: Ray writes ``~/.ray/auth_token``
    with the process's umask (0644 under the usual 022), where another user of the machine could read it
    and reach the loopback Ray. The folder is made 0700 before Ray starts, the file 0600 after."""
    if not local:
        yield
        return
    try:
        folder = Path.home() / ".ray"
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid == os.getuid():
            folder.chmod(0o700)
    except (OSError, RuntimeError) as exc:  # no home folder, or not ours: Ray's own handling stands
        logger.warning("cannot keep Ray's token folder private: %s", exc)
        yield
        return
    try:
        yield
    finally:
        token = folder / "auth_token"
        with contextlib.suppress(OSError):
            if token.stat().st_uid == os.getuid():
                token.chmod(0o600)


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Lets ``ray.init`` keep 127.0.0.1 as the node's address while it starts a local Ray.

    On Linux, ``ray.init`` replaces a loopback ``_node_ip_address`` with the machine's outward
    address (``services.resolve_ip_for_localhost``), and its servers then listen on every
    interface. It keeps loopback where Ray runs without clusters, which it reads from
    ``ray_constants.ENABLE_RAY_CLUSTER`` (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read when ray is
    imported, so too late to set here): that flag is turned off while the local Ray starts.
    A joined cluster is never affected, and the flag is put back after.
    """
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        logger.warning("this Ray has no ENABLE_RAY_CLUSTER: its local servers may listen beyond 127.0.0.1")
        yield
        return
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Puts back this process's SIGTERM and SIGINT handlers after the block.

    ``ray.init`` installs its own SIGTERM handler in the driver (``sys.exit(SIGTERM)``): the tuner's
    own must run, so that SIGTERM stores the trials in flight as Ctrl-C does. A SIGTERM that comes
    while Ray's handler is in force ends the block with that ``SystemExit``; it is handed to the
    handler Ray's displaced, as if that one had been in force.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)

    handed = False
    try:
        yield
    except SystemExit as exc:
        handler = saved[signal.SIGTERM]
        if exc.code == signal.SIGTERM and callable(handler):
            restore()
            handed = True  # the handler may change its own signal's handling (the tuner's ignores a second)
            handler(signal.SIGTERM, None)  # the tuner's raises KeyboardInterrupt
        raise
    finally:
        if not handed:
            restore()
