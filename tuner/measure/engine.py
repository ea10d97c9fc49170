"""The load engines behind one contract, and what they watch while they measure.

A load engine drives a model at one concurrency until its measurement is stable and returns a
``Measured``: the client's view (a LoadPoint), the server's statistics over the window and the
CPU/GPU use over it.

    engine = make_engine("builtin", url, settings, model_info, samples)
    measured = engine.measure("model", 8, probe)

Two engines:

- ``perf_analyzer``: NVIDIA's load generator (tuner.measure.perf_analyzer), run as a process.
  The probe's snapshots bracket its whole run: the server statistics and CPU use then cover the
  unstable windows before the stable ones too (``exact_window`` is False).
- ``builtin``: an asyncio engine on ``tritonclient.grpc.aio`` in the worker's own process
  (tuner.measure.builtin), for where the binary cannot run. It lets each window drain before
  the next starts and snapshots between windows, so the statistics cover exactly the windows
  it reports (``exact_window`` is True).
"""

from __future__ import annotations

import time

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tuner.measure.server_stats import ServerWindow, model_counters, window
from tuner.measure.usage import Sample, Usage, UsageMonitor
from tuner.trial import LoadPoint

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
    """

    engine: str = "perf_analyzer"
    window_ms: int = 2000
    stability_percentage: float = 10.0
    max_windows: int = 10
    protocol: str = "grpc"
    input_data: str = "random"


@dataclass(frozen=True)
class Snapshot:
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


class Probe:
    """Takes snapshots of what the worker watches during a measurement.

    Args:
        statistics: Returns Triton's statistics answer for the model being measured.
        monitor: The worker's running usage monitor.
    """

    def __init__(self, statistics: Callable[[], Mapping[str, Any]], monitor: UsageMonitor) -> None:
        self._statistics = statistics
        self.monitor = monitor

    def snap(self) -> Snapshot:
        return Snapshot(model_counters(self._statistics()), self.monitor.mark())

    def snap_after(self, start: Snapshot, answered: int, timeout_s: float = 1.0) -> Snapshot:
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
                return snapshot
            time.sleep(0.005)

    def between(self, start: Snapshot, end: Snapshot) -> tuple[ServerWindow, Usage]:
        return window(start.counters, end.counters), self.monitor.usage(start.sample, end.sample)


class LoadEngine(Protocol):
    """Measures a loaded model at one concurrency.

    ``measure`` raises MeasurementError when the load cannot be driven (the server refused the
    requests, the engine failed); a measurement that never became stable is returned with
    ``point.stable`` False.
    """

    def measure(self, model: str, concurrency: int, probe: Probe) -> Measured: ...


def spread_pct(values: list[float]) -> float:
    """(max - min) / mean of the values, in percent."""
    mean = float(np.mean(values)) if values else 0.0
    return 100.0 * (max(values) - min(values)) / mean if mean > 0 else 0.0
