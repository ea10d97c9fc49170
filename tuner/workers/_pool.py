"""Worker pools: keep every worker busy with trials, and survive workers that die or hang.

    with make_pool(...) as pool:
        while pool.idle():
            pool.submit(ticket, spec)
        for finished in pool.collect(timeout_s=1.0):
            ...                                  # Finished(ticket, spec, outcome, worker)

The contract of both pools:

- ``submit`` never blocks and never measures; ``collect`` returns the trials that finished
  (possibly none before the timeout). Every submitted ticket comes back exactly once.
- A trial's own failure comes back as an outcome with ``error`` set, never as an exception.

``LocalPool`` runs one Worker in this process: no Ray processes share the cores being
measured. ``RayPool`` runs one Ray actor per worker, each owning its own Triton server,
pinned to its own cores on CPU or given its own GPU. A trial whose actor dies is run once
more on another worker; a trial that outlives the trial timeout has its actor killed and is
FAIL. A dead actor is replaced.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tarfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.errors import ServerStartError
from tuner.model import external_data
from tuner.pool import Finished, WorkerStatus
from tuner.trial import Failure, Screen, TrialOutcome, TrialSpec
from tuner.triton import kill_orphans
from tuner.workers._ray_init import init_ray
from tuner.workers._worker import Worker, WorkerSetup, disk_full_error, warn_if_niced

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11; only the checker reads it here

logger = logging.getLogger(__name__)


class LocalPool:
    """One Worker in this process; ``collect`` runs the submitted trial.

    Args:
        setup: The worker's setup.
    """

    def __init__(self, setup: WorkerSetup) -> None:
        self.worker = Worker(setup)
        self.status = [WorkerStatus(index=0, node="local", pid=os.getpid(), cores=tuple(sorted(_affinity())))]
        self._queued: deque[tuple[int, TrialSpec, Screen | None]] = deque()

    def __enter__(self) -> Self:
        self.worker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return 1

    def idle(self) -> int:
        return 0 if self._queued else 1

    def submit(self, ticket: int, spec: TrialSpec, screen: Screen | None = None) -> None:
        self._queued.append((ticket, spec, screen))
        self.status[0].ticket = ticket

    def collect(self, timeout_s: float) -> list[Finished]:
        del timeout_s  # the trial runs here and now
        if not self._queued:
            return []
        ticket, spec, screen = self._queued[0]
        outcome = self.worker.evaluate(spec, screen)
        self._queued.popleft()
        _count(self.status[0], outcome)
        return [Finished(ticket, spec, outcome, 0)]

    def close(self) -> None:
        self.worker.stop()


def _count(status: WorkerStatus, outcome: TrialOutcome) -> None:
    status.ticket = None
    status.done += 1
    status.failed += int(outcome.failed)


def _affinity() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def worker_cores(index: int, cores_per_worker: int) -> list[int]:
    """The cores of worker ``index`` on this node: consecutive, disjoint slices of its cores."""
    available = sorted(_affinity())
    slots = max(1, len(available) // max(1, cores_per_worker))
    start = (index % slots) * cores_per_worker
    return available[start : start + cores_per_worker] or available


def pack_model(model: Path) -> bytes:
    """The bytes a Ray actor gets its model from: a tar archive of an ONNX file and the files beside it
    that hold its tensors (``tuner.model.external_data``), or of a model folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(model, arcname=model.name)
        if model.is_file():
            for location in external_data(model):
                archive.add(model.parent / location, arcname=location)
    return buffer.getvalue()


def unpack_model(setup: WorkerSetup, model_bytes: bytes) -> WorkerSetup:
    """``setup`` with its model in the worker's own folder, written from ``pack_model``'s bytes."""
    model = setup.repository_model
    folder = setup.workdir / ("model" if model is None else "source")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(model_bytes)) as archive:
        first = archive.getmembers()[0].name  # the ONNX file (then its external data), or the model's folder
        archive.extractall(folder, filter="data")
    if model is None:
        return replace(setup, model_path=folder / first)
    moved = replace(model, folder=folder / first)
    return replace(setup, repository_model=moved, model_path=moved.model_file if moved.is_onnx else None)


class WorkerActor:
    """The body of a Ray actor: one Worker whose model arrives as bytes through Ray.

    Args:
        setup: The worker's setup; its model (``model_path``, or ``repository_model``'s folder)
            is replaced by a copy this actor writes.
        model_bytes: The model, as ``pack_model`` gives it (so no shared disk is needed).
        cores_per_worker: Pin this process, and so its server and load generator, to this many
            cores of its node; None leaves the affinity as it is (GPU workers).
        index: The worker's index, which picks its slice of cores.
    """

    def __init__(self, setup: WorkerSetup, model_bytes: bytes, cores_per_worker: int | None, index: int) -> None:
        if cores_per_worker:
            os.sched_setaffinity(0, worker_cores(index, cores_per_worker))
        self.worker = Worker(unpack_model(setup, model_bytes))

    def start(self) -> dict[str, Any]:
        import ray

        self.worker.start()
        context = ray.get_runtime_context()
        return {
            "node": f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}",
            "node_id": context.get_node_id(),
            "pid": os.getpid(),
            "cores": sorted(_affinity()),
            "server_pid": self.worker.server.pid,
            "niceness": os.getpriority(os.PRIO_PROCESS, 0),  # its own warning stays in Ray's worker log
        }

    def evaluate(self, spec: TrialSpec, screen: Screen | None = None) -> TrialOutcome:
        return self.worker.evaluate(spec, screen)

    def stop(self) -> None:
        self.worker.stop()


@dataclass
class _Slot:
    status: WorkerStatus
    actor: Any = None
    future: Any = None
    spec: TrialSpec | None = None
    screen: Screen | None = None
    attempt: int = 0
    started: float = 0.0
    #: The actor's process runs on this machine (its pid means something here).
    local: bool = False


@dataclass
class RaySettings:
    """Where and how the Ray workers run.

    Attributes:
        count: Number of workers.
        cpus_per_worker: Ray CPUs (and pinned cores) of each worker.
        gpus_per_worker: Ray GPUs of each worker; Ray hides the others from it.
        address: An existing Ray cluster to join; None starts a local one.
        trial_timeout_s: A trial running longer has its worker killed and is FAIL.
        start_timeout_s: How long a worker may take to start its server.
        max_attempts: Runs of a trial whose worker died before it is FAIL.
    """

    count: int
    cpus_per_worker: int
    gpus_per_worker: float = 0.0
    address: str | None = None
    trial_timeout_s: float = 900.0
    start_timeout_s: float = 120.0
    max_attempts: int = 2


class RayPool:
    """One Ray actor per worker.

    Args:
        setup_for: The setup of worker ``index`` (its own work folder).
        model_path: The ONNX file, or a repository model's folder, sent to every worker through Ray.
        settings: Worker count, resources and timeouts.
    """

    def __init__(self, setup_for: Callable[[int], WorkerSetup], model_path: Path, settings: RaySettings) -> None:
        self.setup_for = setup_for
        self.model_path = model_path
        self.settings = settings
        self.slots = [_Slot(WorkerStatus(index=i)) for i in range(settings.count)]
        self._retry: deque[tuple[int, TrialSpec, Screen | None, int]] = deque()
        self._model_ref: Any = None
        self._started_ray = False

    @property
    def status(self) -> list[WorkerStatus]:
        return [slot.status for slot in self.slots]

    @property
    def size(self) -> int:
        return len(self.slots)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:  # a worker that did not start: the others, their servers and Ray go too
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Joins or starts Ray and starts every worker (each starts its server); ``close`` releases
        what a start that raised took."""
        import ray

        if not ray.is_initialized():
            num_cpus = max(len(_affinity()), self.settings.count * self.settings.cpus_per_worker)
            # set first: Ctrl-C inside ray.init, once its processes run, must still shut them down (``close``),
            # or the process exits with Ray's driver connected to a node its exit handlers stop, and crashes
            self._started_ray = True
            init_ray(self.settings.address, num_cpus)
        self._model_ref = ray.put(pack_model(self.model_path))
        for slot in self.slots:
            self._spawn(slot)
        for slot in self.slots:
            self._await_start(slot)

    def _spawn(self, slot: _Slot) -> None:
        import ray

        remote = ray.remote(WorkerActor).options(
            num_cpus=self.settings.cpus_per_worker,
            num_gpus=self.settings.gpus_per_worker,
            max_concurrency=1,
        )
        cores = None if self.settings.gpus_per_worker else self.settings.cpus_per_worker
        index = slot.status.index
        slot.actor = remote.remote(self.setup_for(index), self._model_ref, cores, index)
        slot.future = slot.actor.start.remote()
        slot.spec = None

    def _await_start(self, slot: _Slot) -> None:
        import ray

        try:
            info = ray.get(slot.future, timeout=self.settings.start_timeout_s)
        except Exception as exc:  # GetTimeoutError, RayActorError, or the worker's own ServerStartError
            raise ServerStartError(f"worker {slot.status.index} did not start: {_reason(exc)}") from exc
        slot.future = None
        slot.status.node = info["node"]
        slot.status.pid = info["pid"]
        slot.local = info["node_id"] == ray.get_runtime_context().get_node_id()
        slot.status.cores = tuple(info["cores"])
        logger.info("worker %d ready on %s, cores %s", slot.status.index, info["node"], info["cores"])
        warn_if_niced(info["niceness"])

    def idle(self) -> int:
        return sum(1 for s in self.slots if s.future is None) - len(self._retry)

    def submit(self, ticket: int, spec: TrialSpec, screen: Screen | None = None, attempt: int = 0) -> None:
        slot = next((s for s in self.slots if s.future is None), None)
        if slot is None:
            self._retry.append((ticket, spec, screen, attempt))
            return
        slot.spec, slot.screen, slot.attempt, slot.started = spec, screen, attempt, time.monotonic()
        slot.status.ticket = ticket
        slot.future = slot.actor.evaluate.remote(spec, screen)

    def collect(self, timeout_s: float) -> list[Finished]:
        import ray

        self._drain_retries()
        busy = {s.future: s for s in self.slots if s.future is not None}
        if not busy:
            return []
        ready, _ = ray.wait(list(busy), num_returns=1, timeout=timeout_s)
        finished = []
        for future in ready:
            result = self._result(busy[future], future)
            if result is not None:
                finished.append(result)
        finished.extend(self._expire_hung())
        return finished

    def _result(self, slot: _Slot, future: Any) -> Finished | None:
        import ray

        ticket, spec = slot.status.ticket, slot.spec
        assert ticket is not None and spec is not None
        try:
            outcome = ray.get(future)
        except ray.exceptions.RayActorError as exc:
            logger.warning("worker %d died during trial %d: %s", slot.status.index, ticket, _reason(exc))
            self._replace(slot)
            if slot.attempt + 1 < self.settings.max_attempts:
                self._retry.append((ticket, spec, slot.screen, slot.attempt + 1))
                return None
            outcome = TrialOutcome(
                spec=spec, config_pbtxt="", error=f"worker died: {_reason(exc)}", failure=Failure.WORKER
            )
        except Exception as exc:  # noqa: BLE001  (an unexpected error inside the worker: the trial fails, the study goes on)
            outcome = _worker_error(spec, exc)
            slot.future = None
        else:
            slot.future = None
        index = slot.status.index
        _count(slot.status, outcome)
        slot.spec = None
        return Finished(ticket, spec, outcome, index)

    def _expire_hung(self) -> list[Finished]:
        now = time.monotonic()
        expired = []
        for slot in self.slots:
            if slot.future is None or slot.spec is None or now - slot.started < self.settings.trial_timeout_s:
                continue
            ticket, spec = slot.status.ticket, slot.spec
            assert ticket is not None
            logger.warning(
                "trial %d exceeded %.0f s on worker %d; killing the worker",
                ticket,
                self.settings.trial_timeout_s,
                slot.status.index,
            )
            self._replace(slot)
            outcome = TrialOutcome(
                spec=spec,
                config_pbtxt="",
                error=f"trial timed out after {self.settings.trial_timeout_s:.0f} s",
                failure=Failure.WORKER,
            )
            _count(slot.status, outcome)
            expired.append(Finished(ticket, spec, outcome, slot.status.index))
        return expired

    def _kill(self, slot: _Slot) -> None:
        """Kills the slot's actor; its server dies with it, and on this node its stubs too."""
        import ray

        ray.kill(slot.actor, no_restart=True)
        self._sweep(slot)

    def _sweep(self, slot: _Slot) -> None:
        """Waits until the slot's killed actor is gone (where it ran on this node), then kills what
        is left of its servers on this node.

        The server dies with its actor (parent-death signal), but an actor that outlived the wait
        may have started another; whatever is left is killed, and gone, when this returns.
        """
        if slot.local:
            _wait_gone(slot.status.pid)
        kill_orphans(self.setup_for(slot.status.index).workdir)

    def _replace(self, slot: _Slot) -> None:
        """Kills the slot's actor and starts a fresh one."""
        self._kill(slot)
        slot.spec = None
        self._spawn(slot)
        self._await_start(slot)

    def _drain_retries(self) -> None:
        while self._retry and any(s.future is None for s in self.slots):
            ticket, spec, screen, attempt = self._retry.popleft()
            self.submit(ticket, spec, screen, attempt)

    def close(self) -> None:
        """Stops every server (gracefully where the worker answers), then the actors and Ray.

        When it returns, no server or stub of a worker on this node is left running.
        """
        if not self._started_ray and all(slot.actor is None for slot in self.slots):
            # nothing of Ray's runs: a start stopped before ray.init, perhaps inside ``import ray``, whose
            # half-imported module a second import would only break further
            return
        import ray

        try:
            if ray.is_initialized():
                self._stop_workers()
        finally:  # also where stopping them raised (Ray's node gone first) or ray.init was interrupted
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False

    def _stop_workers(self) -> None:
        import ray

        live = [slot for slot in self.slots if slot.actor is not None]
        for slot in live:
            if slot.future is not None:  # busy: it cannot take a stop call
                ray.kill(slot.actor, no_restart=True)
        stops = [slot.actor.stop.remote() for slot in live if slot.future is None]
        if stops:
            ray.wait(stops, num_returns=len(stops), timeout=30)
        for slot in live:
            ray.kill(slot.actor, no_restart=True)
            slot.actor = slot.future = None
        for slot in live:
            self._sweep(slot)


def _worker_error(spec: TrialSpec, exc: Exception) -> TrialOutcome:
    """The outcome of a trial whose worker raised: DISK_FULL where a full disk was the cause."""
    full = disk_full_error(getattr(exc, "cause", None) or exc)
    if full is not None:
        return TrialOutcome(spec=spec, config_pbtxt="", error=f"disk full: {full}", failure=Failure.DISK_FULL)
    return TrialOutcome(spec=spec, config_pbtxt="", error=f"worker error: {_reason(exc)}", failure=Failure.WORKER)


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    """Waits until a process of this machine has exited."""
    import psutil

    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=timeout_s)


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause or exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:500]
