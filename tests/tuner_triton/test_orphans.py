"""Orphan clean-up kills the processes of one worker's folder only, matched by whole path components."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.triton import kill_orphans

#: Python, which ignores the arguments after its -c code: under the name of a Triton program,
#: it stands in for one with the same command line.
_SLEEP = ["-c", "import time; time.sleep(600)"]


def _program(folder: Path, name: str) -> Path:
    """A program called ``name`` in ``folder`` that sleeps, whatever its arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.symlink_to(os.path.realpath(sys.executable))
    return path


def _server_and_stub(root: Path, bin_dir: Path, worker: str) -> list[list[str]]:
    """The command lines of a worker's tritonserver and of its python backend stub, as the tuner starts them."""
    workdir = root / worker
    backends = workdir / "server" / "backends"
    stub = _program(backends / "python", "triton_python_backend_stub")
    server = [
        str(bin_dir / "tritonserver"),
        *_SLEEP,
        f"--model-repository={workdir / 'repository'}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
    ]
    stub_cmd = [
        str(stub),
        *_SLEEP,
        str(workdir / "repository" / "m" / "1" / "model.py"),
        "shm_region",
        "1048576",
        str(backends / "python"),
        "m_0_0",
        "DEFAULT",
    ]
    return [server, stub_cmd]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[dict[str, list[subprocess.Popen[bytes]]]]:
    """Servers and stubs of worker-1, worker-10 and worker-1x, and a bystander naming worker-1's files."""
    root = tmp_path / "study"
    bin_dir = tmp_path / "bin"
    _program(bin_dir, "tritonserver")
    other = _program(bin_dir, "backup")
    started: dict[str, list[subprocess.Popen[bytes]]] = {}
    for worker in ("worker-1", "worker-10", "worker-1x"):
        started[worker] = [subprocess.Popen(cmd) for cmd in _server_and_stub(root, bin_dir, worker)]
    started["bystander"] = [subprocess.Popen([str(other), *_SLEEP, str(root / "worker-1" / "repository")])]
    yield started
    for group in started.values():
        for process in group:
            process.kill()
            process.wait(timeout=10)


def test_only_the_named_workers_processes_are_killed(tmp_path: Path, processes) -> None:
    killed = kill_orphans(tmp_path / "study" / "worker-1")

    # gone when it returns, and not reaped by it: their parent still reads how they ended
    assert [p.poll() for p in processes["worker-1"]] == [-9, -9]
    survivors = processes["worker-10"] + processes["worker-1x"] + processes["bystander"]
    assert [p.poll() for p in survivors] == [None] * len(survivors)
    assert killed == 2


def test_a_folder_given_through_a_symlink_or_dots_is_the_same_folder(tmp_path: Path, processes) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "study")

    killed = kill_orphans(tmp_path / "link" / "worker-10" / ".." / "worker-10")

    assert killed == 2
    assert [p.poll() for p in processes["worker-10"]] == [-9, -9]
    assert [p.poll() for p in processes["worker-1"] + processes["worker-1x"]] == [None] * 4


def test_no_process_of_a_folder_kills_nothing(tmp_path: Path, processes) -> None:
    assert kill_orphans(tmp_path / "study" / "worker-2") == 0
    assert all(p.poll() is None for group in processes.values() for p in group)


def test_the_shared_memory_left_by_a_workers_servers_goes_with_its_orphans(tmp_path: Path) -> None:
    from tuner.triton._process import SHM_FOLDER, shm_prefix

    mine, other = tmp_path / "study" / "worker-1", tmp_path / "study" / "worker-10"
    for folder in (mine / "server", other / "server"):
        folder.mkdir(parents=True)
    left = [SHM_FOLDER / f"{shm_prefix(mine / 'server')}{n}" for n in ("a", "b")]  # as a killed server leaves them
    kept = SHM_FOLDER / f"{shm_prefix(other / 'server')}a"
    try:
        for region in (*left, kept):
            region.write_bytes(b"\0" * 16)

        kill_orphans(mine)  # as the pool sweeps a worker it killed: by the worker's folder, not its server's

        assert not any(region.exists() for region in left)
        assert kept.exists(), "another worker's regions are not this one's"
    finally:
        for region in (*left, kept):
            region.unlink(missing_ok=True)


def test_regions_no_process_maps_go_whichever_folder_left_them(tmp_path: Path) -> None:
    import mmap
    import uuid

    from tuner.triton._process import SHM_FOLDER, remove_unmapped_regions

    name = f"tuner_{uuid.uuid4().hex[:16]}_"
    left, mapped, new = (SHM_FOLDER / f"{name}{n}" for n in ("left", "mapped", "new"))
    try:
        for region in (left, mapped, new):
            region.write_bytes(b"\0" * 4096)
        hour_ago = time.time() - 3600
        for region in (left, mapped):  # a killed server's, of a folder long removed; a live server's
            os.utime(region, (hour_ago, hour_ago))
        with mapped.open("r+b") as file, mmap.mmap(file.fileno(), 4096):
            remove_unmapped_regions(min_age_s=60)
            # gone (a test beside this one starting a server may have swept it first: the same function)
            assert not left.exists()
            assert mapped.exists(), "a region some process maps is in use"
            assert new.exists(), "a region just made may not be mapped yet"
    finally:
        for region in (left, mapped, new):
            region.unlink(missing_ok=True)


_OWNER = """
import os, subprocess, sys, time
import psutil
from tuner.triton._process import die_with_parent, GroupGuard
server = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"],
                          preexec_fn=die_with_parent)
guard = GroupGuard(server.pid)
print(server.pid, flush=True)
sys.stdin.readline()
if sys.argv[1] == "stop":
    guard.stop()
    print("stopped", flush=True)
    time.sleep(600)
if sys.argv[1] == "children":  # as a Ray worker leaves: its children SIGKILLed, then exit
    for child in psutil.Process().children():
        child.kill()
    os._exit(0)
time.sleep(600)
"""


def _start_owner(how: str) -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).parents[2])  # fmt: skip
    assert owner.stdout is not None
    pgid = int(owner.stdout.readline())
    deadline = time.monotonic() + 10
    while len(_group(pgid)) < 2 and time.monotonic() < deadline:  # the server and its child ("stub")
        time.sleep(0.1)
    assert len(_group(pgid)) == 2
    assert _guards_of(pgid), "no guard watches the group"
    return owner, pgid


def _wait_gone(pgid: int) -> list[int]:
    deadline = time.monotonic() + 5
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _group(pgid)


@pytest.mark.parametrize("how", ["kill", "children"])
def test_a_dead_owner_takes_its_servers_whole_process_group_with_it(how: str) -> None:
    """The server dies with its owner (parent-death signal); the guard takes the rest of its group,
    where the python backend's stubs run, whether the owner is SIGKILLed or, as a Ray worker that
    loses its driver does, kills its own children (the guard is not one) and exits."""
    owner, pgid = _start_owner(how)

    if how == "kill":
        owner.kill()
    else:
        _tell(owner)
    owner.wait(timeout=10)

    assert _wait_gone(pgid) == [], "a process of the server's group outlived its owner"


def test_a_stood_down_guard_leaves_and_kills_nothing() -> None:
    owner, pgid = _start_owner("stop")
    try:
        _tell(owner)
        assert owner.stdout is not None and owner.stdout.readline().strip() == "stopped"
        deadline = time.monotonic() + 5
        while _guards_of(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _guards_of(pgid) == []
        assert len(_group(pgid)) == 2, "the stood-down guard killed the group"
    finally:  # the stand-in stub has no guard left to take it
        owner.kill()
        owner.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        assert _wait_gone(pgid) == []


def _tell(owner: subprocess.Popen[str]) -> None:
    assert owner.stdin is not None
    owner.stdin.write("go\n")
    owner.stdin.flush()


def _guards_of(pgid: int) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        argv = process.info["cmdline"] or []
        if argv[:2] == ["sh", "-c"] and argv[-1] == str(pgid) and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process.pid)
    return found


def _group(pgid: int) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
    return found
