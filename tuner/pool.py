"""The pool contract: what the study loop needs of a pool of workers, and what it gets back.

    with pool:
        while pool.idle():
            pool.submit(ticket, spec, screen)        # screen: None, or when to stop a hopeless trial early
        for finished in pool.collect(timeout_s=1.0):
            ...                                  # Finished(ticket, spec, outcome, worker)

The contract is written on ``Pool``. Four pools keep it: ``LocalPool`` and ``RayPool``
(tuner.workers) measure on real servers, ``ReplayPool`` (tuner.replay) answers from a recorded
landscape, and the tests' ``ScriptedPool`` answers from a script; tests/contracts runs one suite
against each. A ``WorkerPlan`` says how many workers a pool runs and what each gets. This module
imports no worker code, so a replay (and anything else that only speaks the contract) loads
neither Ray nor Triton.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tuner.trial import Screen, TrialOutcome, TrialSpec

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class Finished:
    """A trial that came back from a worker."""

    ticket: int
    spec: TrialSpec
    outcome: TrialOutcome
    worker: int


@dataclass
class WorkerStatus:
    """What one worker is doing, for progress displays."""

    index: int
    node: str = ""
    pid: int = 0
    cores: tuple[int, ...] = ()
    ticket: int | None = None
    done: int = 0
    failed: int = 0


class Pool(Protocol):
    """What the study loop needs of a pool of workers.

    Contract (the study loop calls every method from one thread; a pool need not be thread-safe):

    - ``__enter__`` starts every worker (their servers included) and returns the pool; it raises
      ServerStartError where a worker cannot start, having released what it took (a with-statement
      calls no ``__exit__`` then). ``__exit__`` closes.
    - ``status``: one WorkerStatus per worker, ``index`` 0 to n-1 in order, kept current (displays
      read it while trials run). A worker's ``ticket`` is the trial it runs or holds, or None;
      ``done`` and ``failed`` count the trials it gave back, and those of them that failed.
    - ``idle()``: how many trials may be submitted now: the workers free, less what is queued.
      Never negative; before anything is submitted, the number of workers.
    - ``submit(ticket, spec, screen=None)``: only while ``idle()`` > 0, with a ticket not in flight.
      It never blocks and never measures: the trial runs in a worker, or in the next ``collect``.
      A ``screen`` (tuner.trial.Screen) travels with the spec, never in it (the spec's key names
      the config): the worker screens the trial's first concurrency by it, and a hopeless config
      comes back pruned (``outcome.pruned`` set, its one point the screen's), which is no failure.
    - ``collect(timeout_s)``: the trials that finished, possibly none. With nothing in flight it
      returns an empty list at once; a pool whose workers run elsewhere waits at most about
      ``timeout_s`` for one, and one that runs the trial in the caller's thread (LocalPool) takes
      as long as the trial. Every submitted ticket comes back exactly once, in a ``Finished`` with
      the spec as submitted, an outcome of that spec, and the ``index`` of the worker that ran it.
    - A trial's own failure (a config Triton refuses, a measurement that fails, a worker that died
      or hung) comes back as a failed outcome (``error`` set; ``failure`` its kind, CONFIG where
      unsaid; DISK_FULL stops the study), never as an exception. ``collect`` raises only what
      stops the study: KeyboardInterrupt as it came, and ServerStartError where a dead worker
      cannot be replaced.
    - ``close()`` stops every worker and releases what ``__enter__`` took (servers, actors, a Ray
      it started); trials in flight are dropped and never come back. It may be called twice and
      after ``__exit__``; a closed pool is not used again.
    """

    @property
    def status(self) -> list[WorkerStatus]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def idle(self) -> int: ...
    def submit(self, ticket: int, spec: TrialSpec, screen: Screen | None = None) -> None: ...
    def collect(self, timeout_s: float) -> list[Finished]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers run, and what each gets.

    Attributes:
        count: Number of workers.
        cpus_per_worker: Cores each worker is pinned to (on CPU) and asks Ray for.
        gpus_per_worker: GPUs each worker asks Ray for; 0 on CPU.
    """

    count: int
    cpus_per_worker: int
    gpus_per_worker: float

    @property
    def on_gpu(self) -> bool:
        return self.gpus_per_worker > 0
