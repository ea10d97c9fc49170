"""A scripted pool: the workers of in-process study-loop tests.

The study loop, the sampler and the storage stay real; the pool answers each config with the
throughput the test chooses, as httpx's MockTransport answers requests. What such a test checks is
where the loads go (reuse, re-measurement, Ctrl-C), not what a server measures.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from tuner.config import StudyConfig
from tuner.pool import Finished, Pool, WorkerStatus
from tuner.storage import Store
from tuner.study import StudyRunner, TrialEvent
from tuner.trial import Failure, LoadPoint, Screen, TrialOutcome, TrialSpec, screened

if TYPE_CHECKING:
    from typing_extensions import Self

#: Throughput by instance count, and the spread of the windows of each load (which widens its interval).
Script = dict[int, tuple[float, float]]


class ScriptedPool:
    """Workers that answer a config with the throughput ``script`` gives its instance count.

    Follows tuner.pool.Pool: ``collect`` answers the oldest trial in flight, one at a time, so the
    study loop sees workers busy as it would with real ones. A trial submitted with a screen is
    judged by it on its scripted point, as a worker's screen would judge it.

    Args:
        script: Per instance count, (throughput, window spread in percent).
        workers: Trials that may be in flight at once.
        noise: Per instance count, factors for its successive loads (1.0 where left out).
        interrupt_at: Raise KeyboardInterrupt (Ctrl-C) in ``collect`` once this many loads came back.
        seconds: How long each load takes.
        failing: Accelerators that cannot load the model: a config on one fails as Triton's refusal would.
        no_variant: Precisions the model has no variant of: a config of one fails as the variant's build would.
    """

    def __init__(self, script: Script, workers: int = 1, noise: dict[int, Sequence[float]] | None = None,
                 interrupt_at: int | None = None, seconds: float = 0.0, failing: Collection[str] = (),
                 no_variant: Collection[str] = ()) -> None:
        self.script = script
        self.failing = failing
        self.no_variant = no_variant
        self.noise = noise or {}
        self.status = [WorkerStatus(index=i, node="scripted") for i in range(workers)]
        self.submitted: list[TrialSpec] = []
        self.in_flight_together: list[list[int]] = []  # instance counts in flight, at each submit
        self.interrupt_at = interrupt_at
        self.seconds = seconds
        self._queued: deque[tuple[int, TrialSpec, Screen | None]] = deque()
        self.screens: list[Screen | None] = []  # as submitted
        self._loads: dict[int, int] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def idle(self) -> int:
        return len(self.status) - len(self._queued)

    def submit(self, ticket: int, spec: TrialSpec, screen: Screen | None = None) -> None:
        next(s for s in self.status if s.ticket is None).ticket = ticket
        self._queued.append((ticket, spec, screen))
        self.submitted.append(spec)
        self.screens.append(screen)
        self.in_flight_together.append([s.instance_count for _, s, _ in self._queued])

    def collect(self, timeout_s: float) -> list[Finished]:
        del timeout_s
        if not self._queued:
            return []
        done = sum(s.done for s in self.status)
        if self.interrupt_at is not None and done >= self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.seconds)
        ticket, spec, screen = self._queued.popleft()
        slot = next(s for s in self.status if s.ticket == ticket)
        slot.ticket, slot.done = None, slot.done + 1
        return [Finished(ticket, spec, screened(self._answer(spec), screen), slot.index)]

    def close(self) -> None:
        self._queued.clear()

    def _answer(self, spec: TrialSpec) -> TrialOutcome:
        if spec.precision in self.no_variant:
            return TrialOutcome(spec, "", error=f"{spec.precision} variant: no {spec.precision} variant: scripted",
                                failure=Failure.VARIANT)
        if spec.accelerator in self.failing:
            return TrialOutcome(spec, "", error=f"Triton refused the config ({spec.accelerator}): scripted",
                                failure=Failure.CONFIG)
        n = spec.instance_count
        load = self._loads.get(n, 0)
        self._loads[n] = load + 1
        factors = self.noise.get(n, ())
        throughput, spread = self.script[n]
        throughput *= factors[load] if load < len(factors) else 1.0
        p99 = 1000.0 / throughput
        point = LoadPoint(8, throughput, p99, p99, p99, p99, p99, throughput_spread_pct=spread)
        return TrialOutcome(spec, "", points=(point,), timings_s={"measure_s": 1.0})


class ScriptedRunner(StudyRunner):
    """The study runner on a scripted pool instead of the one the study file asks for."""

    def __init__(self, cfg: StudyConfig, pool: ScriptedPool,
                 on_event: Callable[[TrialEvent], None] | None = None) -> None:
        super().__init__(cfg, Store(cfg.storage), on_event)
        self.scripted = pool

    def open_pool(self) -> Pool:
        return self.scripted
