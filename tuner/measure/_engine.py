"""The load engines behind one contract, and what they watch while they measure.

A load engine drives a model at one concurrency until its measurement is stable and returns a
``Measured``: the client's view (a LoadPoint), the server's statistics over the window and the
CPU/GPU use over it.

    engine = make_engine("builtin", url, settings, model_info, samples)
    measured = engine.measure("model", 8, probe)

Two engines:

- ``perf_analyzer``: NVIDIA's load generator (tuner.measure._perf_analyzer), run as a process.
  The probe's snapshots bracket its whole run: the server statistics and CPU use then cover the
  unstable windows before the stable ones too (``exact_window`` is False).
- ``builtin``: an asyncio engine on ``tritonclient.grpc.aio`` in the worker's own process
  (tuner.measure._builtin), for where the binary cannot run. It lets each window drain before
  the next starts and snapshots between windows, so the statistics cover exactly the windows
  it reports (``exact_window`` is True).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tuner.measure._server_stats import ServerWindow, model_counters, window
from tuner.measure._usage import Sample, Usage, UsageMonitor
from tuner.trial import LoadPoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """How a load engine measures one concurrency.

    Attributes:
        engine: ``perf_analyzer`` or ``builtin``.
        window_ms: Length of one measurement window.
        stability_percentage: How far each of the last three windows may lie from their mean.
        max_windows: Windows to try before giving up on stability.
        protocol: ``grpc`` or ``http`` (perf_analyzer; the builtin engine speaks gRPC).
        input_data: ``random`` or ``zero`` where no real samples are given (random integers
            can be out of range, e.g. token ids).
        screen_window_ms: Length of each of the three windows of a screen (``LoadEngine.screen``).
        shared_memory: ``none`` (tensors travel in the requests) or ``system`` (perf_analyzer
            passes them through system shared memory).
        output_bytes: The shared memory region of each output, in bytes, under ``system``.
    """

    engine: str = "perf_analyzer"
    window_ms: int = 2000
    stability_percentage: float = 10.0
    max_windows: int = 10
    protocol: str = "grpc"
    input_data: str = "random"
    screen_window_ms: int = 500
    shared_memory: str = "none"
    output_bytes: int = 0


@dataclass(frozen=True)
class CounterSnapshot:
    """Cumulative server counters and a usage sample at one moment."""

    counters: Mapping[str, Any]
    sample: Sample


@dataclass(frozen=True)
class Measured:
    """One concurrency measured: the client's figures, the server's, and the machine's."""

    point: LoadPoint
    server: ServerWindow
    usage: Usage
    exact_window: bool
    requests: int | None = None  # completed in the reported windows, where the engine counts them


def measure_trusted(take: Callable[[], Measured], limit_pct: float, retries: int, what: str) -> Measured:
    """``take()``, taken again while other processes used more than ``limit_pct`` of a core during it, at most
    ``retries`` times; then kept with its point flagged ``contaminated``. ``what`` names the measurement in
    the warnings (``digits_forest at concurrency 8``). A concurrent job on the same cores can halve a
    throughput while every window agrees: only the machine's CPU shows it."""
    for attempt in range(retries + 1):
        measured = take()
        if measured.usage.other_cpu_pct <= limit_pct:
            return measured
        logger.warning(
            "other processes used %.0f%% of a core while %s was measured%s",
            measured.usage.other_cpu_pct,
            what,
            "; measuring again" if attempt < retries else "; kept, flagged",
        )
    return dataclasses.replace(measured, point=dataclasses.replace(measured.point, contaminated=True))


class Probe:
    """Takes snapshots of what the worker watches during a measurement.

    Args:
        statistics: Returns Triton's statistics answer for the model being measured.
        monitor: The worker's running usage monitor.
        steps: For an ensemble, returns each composing model's statistics answer by name.
    """

    def __init__(
        self,
        statistics: Callable[[], Mapping[str, Any]],
        monitor: UsageMonitor,
        steps: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self._statistics = statistics
        self.monitor = monitor
        self._steps = steps

    def snap(self) -> CounterSnapshot:
        counters = model_counters(self._statistics())
        if self._steps is not None:
            counters["steps"] = {name: model_counters(answer) for name, answer in self._steps().items()}
        return CounterSnapshot(counters, self.monitor.mark())

    def snap_after(self, start: CounterSnapshot, answered: int, timeout_s: float = 1.0) -> CounterSnapshot:
        """A snapshot once the server has counted the ``answered`` requests since ``start``.

        Triton counts a request after its response is sent, so a client that has every answer can
        still read the counters one request short. Gives up after ``timeout_s`` (the counters then
        stay as read: a request the server never counted is not invented).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            snapshot = self.snap()
            counted = snapshot.counters["requests"] - start.counters["requests"]
            if counted >= answered or time.monotonic() >= deadline:
                # an ensemble's steps are counted after their own responses, which can be after its own
                return snapshot if self._steps is None else self.snap_quiet(max(0.0, deadline - time.monotonic()))
            time.sleep(0.005)

    def snap_quiet(self, timeout_s: float = 1.0, quiet_s: float = 0.02) -> CounterSnapshot:
        """A snapshot once the counters hold still for ``quiet_s``, for after a load has ended.

        Triton counts a request after it sends the response, and the python backend a step's after
        that, so the last requests of a load (and an ensemble's steps) can be counted a moment after
        the client has every answer. Gives up after ``timeout_s`` and returns the last snapshot.
        """
        deadline = time.monotonic() + timeout_s
        snapshot = self.snap()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            previous, snapshot = snapshot, self.snap()
            if snapshot.counters == previous.counters:
                break
        return snapshot

    def between(self, start: CounterSnapshot, end: CounterSnapshot) -> tuple[ServerWindow, Usage]:
        return window(start.counters, end.counters), self.monitor.usage(start.sample, end.sample)


class LoadEngine(Protocol):
    """Measures a loaded model at one concurrency.

    Contract (tests/contracts runs one suite against both engines):

    - An engine is made for one started server (its URL and ``access``); after the server
      restarts, the worker makes a new one. ``measure`` is called any number of times, one call at
      a time, and keeps no connection or process between calls.
    - ``measure(model, concurrency, probe)`` expects ``model`` loaded and ready. It keeps
      ``concurrency`` requests in flight, in windows of ``window_ms``, until the last three
      windows agree within ``stability_percentage`` or ``max_windows`` have passed, and returns a
      ``Measured`` of those windows: ``point.concurrency`` is ``concurrency``, its throughput is
      above zero, its latencies ordered (p50 <= p90 <= p95 <= p99), and ``point.stable`` False
      where the windows never agreed (that is a result, not an error).
    - ``server`` and ``usage`` are ``probe.between`` two of the probe's snapshots: those around
      the reported windows (``exact_window`` True, and ``requests`` counts those windows'
      completed requests) or around the whole run (``exact_window`` False). The engine reads the
      server and the machine only through the probe.
    - ``screen(model, concurrency, probe)`` is a quick look before a measurement, to stop a clearly
      hopeless config early: three windows of ``screen_window_ms``, whatever their spread, returned
      as ``measure`` returns its windows, with ``point.stable`` False (their agreement is not asked).
    - MeasurementError: the load could not be driven (the server refused the requests, the model
      is not there, the engine failed or overran its time); the worker fails the trial with it.
      OSError(ENOSPC): the disk is full (the worker stops the study rather than fail a config).
    """

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured: ...
    def screen(self, model: str, concurrency: int, probe: Probe) -> Measured: ...


def spread_pct(values: list[float]) -> float:
    """(max - min) / mean of the values, in percent."""
    mean = float(np.mean(values)) if values else 0.0
    return 100.0 * (max(values) - min(values)) / mean if mean > 0 else 0.0
