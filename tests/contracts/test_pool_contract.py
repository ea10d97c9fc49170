"""The pool contract (tuner.pool.Pool), run against every pool.

ReplayPool and the tests' ScriptedPool answer at once; LocalPool measures digits_forest on an
embedded server with short windows; RayPool (a Ray start alone takes about 10 s) runs in one test.
Each test drives the pool as the study loop does: submit while a worker is idle, collect.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from scripted import ScriptedPool

from tuner.errors import ServerStartError
from tuner.measure import EngineSettings, SweepPlan
from tuner.model_info import read_model_info
from tuner.pool import Finished, Pool, WorkerPlan
from tuner.replay import Landscape, ReplayPool
from tuner.trial import Failure, InstanceKind, LoadPoint, Screen, TrialOutcome, TrialSpec
from tuner.triton._process import triton_processes
from tuner.workers import LocalPool, RayPool, RaySettings, WorkerSetup

#: Configs every pool can answer (one instance each: a Triton instance of the runner is a process to start).
SPECS = [
    TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1, cpu_threads=1),
    TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=500, instance_count=1, cpu_threads=1),
    TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=0, instance_count=1, cpu_threads=1),
]
#: A config Triton refuses on a CPU-only server (and the recorded landscape lacks).
REFUSED = TrialSpec(max_batch_size=4, dynamic_batching=False, max_queue_delay_us=0, instance_count=1,
                    cpu_threads=1, kind=InstanceKind.GPU)

POOLS = ["replay", "scripted", pytest.param("local", marks=pytest.mark.integration)]


@dataclass
class Made:
    """A pool under test, and a config whose trial fails on it (None: it has none)."""

    pool: Pool
    failing: TrialSpec | None


def _landscape() -> Landscape:
    landscape = Landscape(model="digits_forest", study={}, worker_plan=WorkerPlan(2, 1, 0.0))
    for spec in SPECS:
        point = LoadPoint(2, 100.0 * spec.instance_count, 1.0, 1.0, 1.2, 1.3, 1.5)
        landscape.add(TrialOutcome(spec, "", points=(point,)), {})
    return landscape


def _setup(folder: Path, onnx: Path) -> Callable[[int], WorkerSetup]:
    """Worker setups for digits_forest with the shortest measurement that still measures."""
    info = read_model_info(onnx)
    engine = EngineSettings(engine="builtin", window_ms=200, max_windows=3, stability_percentage=50.0)

    def setup_for(index: int) -> WorkerSetup:
        return WorkerSetup(
            model_name="digits_forest", model_path=onnx, model_info=info, workdir=folder / f"worker-{index}",
            sweep=SweepPlan(fixed=(2,)), engine=engine, warmup_requests=1, contamination_retries=0, index=index,
            contamination_cpu_pct=100_000.0,  # other test processes' CPU flags nothing (a flagged screen stops nothing)
        )

    return setup_for


def _make(kind: str, folder: Path, onnx: Path) -> Made:
    if kind == "replay":
        return Made(ReplayPool(_landscape(), workers=2), failing=REFUSED)
    if kind == "scripted":
        return Made(ScriptedPool({1: (100.0, 1.0)}, workers=2), failing=None)
    if kind == "local":
        return Made(LocalPool(_setup(folder, onnx)(0)), failing=REFUSED)
    settings = RaySettings(count=1, cpus_per_worker=1, start_timeout_s=120)
    return Made(RayPool(_setup(folder, onnx), onnx, settings), failing=REFUSED)


@pytest.fixture(scope="module", params=POOLS)
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Iterator[Made]:
    """An entered pool, shared by the module's tests; each leaves nothing in flight."""
    made = _make(request.param, tmp_path_factory.mktemp(f"pool-{request.param}"), digits_onnx)
    with made.pool:
        yield made


def _drive(pool: Pool, specs: list[TrialSpec], first_ticket: int = 0, screen: Screen | None = None) -> list[Finished]:
    """Submits while a worker is idle and collects until every ticket is back, as the study loop does."""
    waiting = list(enumerate(specs, start=first_ticket))
    in_flight: set[int] = set()
    finished: list[Finished] = []
    deadline = time.monotonic() + 300
    while waiting or in_flight:
        while waiting and pool.idle() > 0:
            ticket, spec = waiting.pop(0)
            idle, done = pool.idle(), sum(s.done for s in pool.status)
            pool.submit(ticket, spec, screen)
            in_flight.add(ticket)
            assert pool.idle() == idle - 1
            assert ticket in {s.ticket for s in pool.status}  # a worker has it ...
            assert sum(s.done for s in pool.status) == done  # ... and submit measured nothing
        for item in pool.collect(timeout_s=1.0):
            assert item.ticket in in_flight, f"ticket {item.ticket} came back twice or was never submitted"
            in_flight.remove(item.ticket)
            finished.append(item)
        assert time.monotonic() < deadline, f"tickets {sorted(in_flight)} never came back"
    return finished


def test_idle_is_every_worker_while_nothing_runs(made: Made) -> None:
    pool = made.pool
    assert [s.index for s in pool.status] == list(range(len(pool.status)))
    assert pool.idle() == len(pool.status) >= 1
    assert all(s.ticket is None for s in pool.status)


def test_collect_with_nothing_in_flight_returns_nothing_at_once(made: Made) -> None:
    started = time.monotonic()

    assert made.pool.collect(timeout_s=5.0) == []

    assert time.monotonic() - started < 1.0


def test_every_ticket_comes_back_once_with_its_spec(made: Made) -> None:
    pool = made.pool
    specs = SPECS[: len(pool.status) + 1]  # one more than the workers: the loop waits for a free one
    done = sum(s.done for s in pool.status)

    finished = _drive(pool, specs, first_ticket=100)

    assert sorted(f.ticket for f in finished) == list(range(100, 100 + len(specs)))
    for item in finished:
        assert item.spec == specs[item.ticket - 100] and item.outcome.spec == item.spec
        assert item.worker in {s.index for s in pool.status}
        assert not item.outcome.failed, item.outcome.error
    assert sum(s.done for s in pool.status) == done + len(specs)
    assert pool.idle() == len(pool.status) and all(s.ticket is None for s in pool.status)


def test_a_failed_trial_comes_back_as_an_outcome(made: Made) -> None:
    if made.failing is None:
        pytest.skip("the script answers every config it is given")
    pool = made.pool
    failed = sum(s.failed for s in pool.status)

    [item] = _drive(pool, [made.failing], first_ticket=200)

    assert item.ticket == 200 and item.outcome.failed and item.outcome.error
    assert item.outcome.failure_kind == Failure.CONFIG
    assert sum(s.failed for s in pool.status) == failed + 1
    assert pool.idle() == len(pool.status)


def test_a_trial_its_screen_shows_hopeless_comes_back_pruned_not_failed(made: Made) -> None:
    pool = made.pool
    failed = sum(s.failed for s in pool.status)
    hopeless = Screen(concurrency=2, latency_metric="latency_p99_ms", latency_budget=1e-6)  # no answer in 1 ns
    hopeful = Screen(concurrency=2, latency_metric="latency_p99_ms", latency_budget=1e6)

    [stopped] = _drive(pool, SPECS[:1], first_ticket=300, screen=hopeless)
    [measured] = _drive(pool, SPECS[:1], first_ticket=301, screen=hopeful)

    assert stopped.spec == SPECS[0] and not stopped.outcome.failed
    assert stopped.outcome.pruned is not None and "in the screening window" in stopped.outcome.pruned
    assert len(stopped.outcome.points) == 1
    assert measured.outcome.pruned is None and not measured.outcome.failed
    assert sum(s.failed for s in pool.status) == failed, "a pruned trial is no failure"


@pytest.mark.parametrize("kind", [*POOLS, pytest.param("ray", marks=[pytest.mark.integration, pytest.mark.slow])])
def test_a_pool_enters_as_itself_and_closes_twice(kind: str, tmp_path: Path, digits_onnx: Path) -> None:
    made = _make(kind, tmp_path, digits_onnx)

    with made.pool as pool:
        assert pool is made.pool and pool.idle() == len(pool.status)
        if kind == "ray":  # the one test Ray runs in (its start takes 10 s): a trial too
            [item] = _drive(pool, SPECS[:1])
            assert item.ticket == 0 and item.outcome.spec == SPECS[0] and not item.outcome.failed, item.outcome.error
            pool.submit(1, SPECS[1])  # closed while this trial runs: its worker is killed, not asked to stop
            # Ray runs what reaches it: the Ray the pool started, and the worker's server, listen on loopback only.
            assert any(p.name() == "gcs_server" for p in psutil.Process().children(recursive=True)), "no Ray here"
            assert _listening_beyond_loopback() == []
            # and the token that lets a client in is this user's alone
            folder = Path.home() / ".ray"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert stat.S_IMODE((folder / "auth_token").stat().st_mode) == 0o600
            # and its session folders (logs, sockets), 0777 by Ray, lie in a folder no one else can enter
            [raylet] = [p for p in psutil.Process().children(recursive=True) if p.name() == "raylet"]
            [session] = [a.split("=", 1)[1] for a in raylet.cmdline() if a.startswith("--session_dir=")]
            root = Path(session).parent.parent
            assert root.stat().st_uid == os.getuid() and stat.S_IMODE(root.stat().st_mode) == 0o700

    # Whatever the pool closed on, no server or stub of its workers is left once close returns.
    assert triton_processes(tmp_path) == []
    made.pool.close()  # closed twice: nothing happens


def test_a_local_rays_folder_is_made_this_users_alone_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.errors import TunerError
    from tuner.workers._ray_init import private_temp_dir

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    mine = tmp_path / f"tuner-{os.getuid()}"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)  # as a umask of 0 or an older run might have left it

    assert private_temp_dir() == mine and stat.S_IMODE(mine.stat().st_mode) == 0o700
    mine.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine.symlink_to(elsewhere)  # a link someone put there first: Ray's files would go where it points
    with pytest.raises(TunerError, match="is not a folder of this user's"):
        private_temp_dir()
    mine.unlink()
    mine.write_text("")
    with pytest.raises(TunerError, match="cannot make a private folder"):
        private_temp_dir()


def _listening_beyond_loopback() -> list[tuple[str, str, int]]:
    """(program, address, port) of every socket this process and its descendants listen on, off loopback."""
    processes = {p.pid: p for p in [psutil.Process(), *psutil.Process().children(recursive=True)]}
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or conn.pid not in processes:
            continue
        address = ipaddress.ip_address(conn.laddr.ip)
        mapped = getattr(address, "ipv4_mapped", None)
        if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
            with contextlib.suppress(psutil.Error):
                found.append((processes[conn.pid].name(), conn.laddr.ip, conn.laddr.port))
    return found


def test_a_ray_pool_whose_worker_cannot_start_releases_what_it_took(
    tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A with-statement does not call ``__exit__`` where ``__enter__`` raised: the pool closes itself."""
    closed: list[bool] = []

    def start(self: RayPool) -> None:
        raise ServerStartError("worker 1: tritonserver exited with code 1")

    monkeypatch.setattr(RayPool, "start", start)
    monkeypatch.setattr(RayPool, "close", lambda self: closed.append(True))
    made = _make("ray", tmp_path, digits_onnx)

    with pytest.raises(ServerStartError, match="worker 1"), made.pool:
        pytest.fail("the pool did not start")

    assert closed == [True]


@pytest.mark.parametrize("stopping", ["works", "raises"])
def test_ctrl_c_inside_ray_init_still_shuts_down_the_ray_it_started(
    tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch, stopping: str
) -> None:
    """Ctrl-C once ``ray.init`` has started Ray's processes and connected, before it returns: the pool shuts
    that Ray down, rather than exit with a driver connected to a node its exit handlers stop (a crash); also
    where stopping the workers raises, as it does once Ray's node is gone."""
    import ray

    from tuner.workers import _pool
    from tuner.workers._ray_init import init_ray

    if ray.is_initialized():
        ray.shutdown()

    def interrupted_init(address: str | None, num_cpus: int) -> None:
        init_ray(address, num_cpus)
        raise KeyboardInterrupt

    def node_gone(self: RayPool) -> None:
        raise RuntimeError("the node is gone")

    monkeypatch.setattr(_pool, "init_ray", interrupted_init)
    if stopping == "raises":
        monkeypatch.setattr(RayPool, "_stop_workers", node_gone)
    made = _make("ray", tmp_path, digits_onnx)

    with pytest.raises(KeyboardInterrupt if stopping == "works" else RuntimeError), made.pool:
        pytest.fail("the pool did not start")

    assert not ray.is_initialized()
    assert ray._private.worker._global_node is None, "Ray's processes were stopped"


def test_sigterm_while_rays_own_handler_is_in_force_goes_to_the_handler_it_displaced() -> None:
    """``ray.init`` sets a SIGTERM handler of its own (``sys.exit(SIGTERM)``) while it runs: a SIGTERM then
    must still stop the run as the tuner's handler does (exit 143 and its message), not exit 15 in silence."""
    import os
    import signal
    import sys
    import time

    from tuner.workers._ray_init import keep_signal_handlers

    called: list[int] = []

    def tuners(signum: int, _frame: object) -> None:
        called.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as the tuner's: a second SIGTERM is ignored
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, tuners)
    try:
        with pytest.raises(KeyboardInterrupt), keep_signal_handlers():
            signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(signum))  # Ray's
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the handler runs between bytecodes
                time.sleep(0.01)
        assert called == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, "the tuner's handler had the last word"
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_start_stopped_before_ray_was_imported_closes_without_importing_it(
    tmp_path: Path, digits_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C or SIGTERM inside ``import ray`` leaves a half-imported Ray: closing the pool must not import it
    again (that raised an AttributeError over the interrupt, with a traceback)."""
    import sys

    def interrupted(self: RayPool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RayPool, "start", interrupted)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    made = _make("ray", tmp_path, digits_onnx)

    with pytest.raises(KeyboardInterrupt), made.pool:
        pytest.fail("the pool did not start")
