"""CPU and GPU use while a measurement runs.

A background thread samples, every ``interval_s``, the cumulative CPU seconds of three groups
of processes and, where a GPU is in use, its utilization, memory and power:

- the server: the Triton process and every process under it (python-backend stubs); a process
  of it that exits keeps the CPU seconds it was last seen with, so a stub or a server restarted
  within a window adds what it used instead of taking it away from the server's total;
- the load generator: this process (the builtin engine's event loop) and its other children
  (perf_analyzer), the finished ones included through ``children_user``/``children_system``;
- everything else on the worker's cores: the cores' busy time less the two groups above.

``mark()`` takes a sample at once and returns it; ``usage(a, b)`` turns two marks into means
over the window between them (from the cumulative counters, so exact whatever the sampling
rate) and maxima (from the samples in between).

    monitor = UsageMonitor(lambda: server.pid)
    monitor.start()
    start = monitor.mark(); ...; usage = monitor.usage(start, monitor.mark())
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import psutil

logger = logging.getLogger(__name__)

#: Reads one GPU: (utilization %, memory used MiB, power W); injectable where NVML is absent.
GpuReader = Callable[[], tuple[float, float, float]]


class UsagePointFields(TypedDict):
    """The LoadPoint fields a Usage fills, typed so that ``replace(point, **fields)`` is checked."""

    server_cpu_pct: float
    server_cpu_max_pct: float
    loadgen_cpu_pct: float
    other_cpu_pct: float
    gpu_util_pct: float
    gpu_util_max_pct: float
    gpu_memory_mb: float
    gpu_power_w: float


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment (CPU in seconds) and the GPU's instantaneous readings."""

    t: float
    server_cpu_s: float
    loadgen_cpu_s: float
    busy_cpu_s: float
    gpu_util_pct: float = 0.0
    gpu_memory_mb: float = 0.0
    gpu_power_w: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Use over one window. CPU in percent of one core (200 = two cores busy)."""

    seconds: float
    server_cpu_pct: float
    server_cpu_max_pct: float
    loadgen_cpu_pct: float
    other_cpu_pct: float
    gpu_util_pct: float = 0.0
    gpu_util_max_pct: float = 0.0
    gpu_memory_mb: float = 0.0
    gpu_power_w: float = 0.0

    def as_point_fields(self) -> UsagePointFields:
        """The LoadPoint fields these figures fill (see tuner.trial.LoadPoint)."""
        return {
            "server_cpu_pct": round(self.server_cpu_pct, 2),
            "server_cpu_max_pct": round(self.server_cpu_max_pct, 2),
            "loadgen_cpu_pct": round(self.loadgen_cpu_pct, 2),
            "other_cpu_pct": round(self.other_cpu_pct, 2),
            "gpu_util_pct": round(self.gpu_util_pct, 2),
            "gpu_util_max_pct": round(self.gpu_util_max_pct, 2),
            "gpu_memory_mb": round(self.gpu_memory_mb, 1),
            "gpu_power_w": round(self.gpu_power_w, 2),
        }


def nvml_reader(gpu_index: int, pids: Callable[[], set[int]]) -> GpuReader:
    """A GpuReader of one NVIDIA GPU through NVML.

    Memory is what the server's processes hold on the GPU where the driver reports it per
    process, else the whole device's used memory.
    """
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)

    def read() -> tuple[float, float, float]:
        util = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        power = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        try:
            ours = pids()
            used = [
                p.usedGpuMemory
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                if p.pid in ours and p.usedGpuMemory
            ]
        except pynvml.NVMLError:
            used = []
        memory = sum(used) if used else pynvml.nvmlDeviceGetMemoryInfo(handle).used
        return util, memory / 2**20, power

    return read


class UsageMonitor:
    """Samples CPU (and GPU) use in a background thread; see the module doc.

    Args:
        server_pid: Returns the server's pid, or None where its processes cannot be seen
            (a remote server): its CPU then counts as zero and as part of "other".
        gpu_reader: Reads the worker's GPU; None on CPU.
        interval_s: Seconds between samples.
    """

    def __init__(
        self, server_pid: Callable[[], int | None], gpu_reader: GpuReader | None = None, interval_s: float = 0.2
    ) -> None:
        self._server_pid = server_pid
        self._gpu = gpu_reader
        self.interval_s = interval_s
        self._own = psutil.Process()
        self._cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        #: The server's processes at the last sample (CPU seconds by pid), and the CPU seconds of
        #: those that have exited since the monitor started.
        self._server_seen: dict[int, float] = {}
        self._server_exited_s = 0.0
        self._server_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        if hasattr(os, "sched_getaffinity"):
            self._cores = sorted(os.sched_getaffinity(0))  # as pinned now, in the worker
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="usage-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def server_pids(self) -> set[int]:
        """The server's process and every process under it; empty where it cannot be seen."""
        pid = self._server_pid()
        if pid is None:
            return set()
        try:
            root = psutil.Process(pid)
            return {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.Error:
            return set()

    def mark(self) -> Sample:
        """Takes a sample now and keeps it with the others."""
        sample = self._sample()
        with self._lock:
            self._samples.append(sample)
            # A study runs for hours: keep about the last ten minutes.
            limit = max(1000, int(600 / self.interval_s))
            if len(self._samples) > limit:
                del self._samples[: len(self._samples) - limit]
        return sample

    def usage(self, start: Sample, end: Sample) -> Usage:
        """Means between two marks, and maxima over the samples taken in between."""
        seconds = max(end.t - start.t, 1e-9)
        with self._lock:
            inside = [s for s in self._samples if start.t <= s.t <= end.t]
        inside = inside or [start, end]
        server = 100.0 * (end.server_cpu_s - start.server_cpu_s) / seconds
        loadgen = 100.0 * (end.loadgen_cpu_s - start.loadgen_cpu_s) / seconds
        busy = 100.0 * (end.busy_cpu_s - start.busy_cpu_s) / seconds
        peaks = [
            100.0 * (b.server_cpu_s - a.server_cpu_s) / (b.t - a.t)
            for a, b in itertools.pairwise(inside)
            if b.t - a.t >= self.interval_s / 2
        ]
        gpu = [s for s in inside if self._gpu is not None]
        return Usage(
            seconds=seconds,
            server_cpu_pct=max(0.0, server),
            server_cpu_max_pct=max([server, *peaks]),
            loadgen_cpu_pct=max(0.0, loadgen),
            other_cpu_pct=max(0.0, busy - server - loadgen),
            gpu_util_pct=sum(s.gpu_util_pct for s in gpu) / len(gpu) if gpu else 0.0,
            gpu_util_max_pct=max((s.gpu_util_pct for s in gpu), default=0.0),
            gpu_memory_mb=max((s.gpu_memory_mb for s in gpu), default=0.0),
            gpu_power_w=sum(s.gpu_power_w for s in gpu) / len(gpu) if gpu else 0.0,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.mark()
            except Exception:  # a failed sample must not end the monitor
                logger.debug("usage sample failed", exc_info=True)

    def _sample(self) -> Sample:
        server_pids = self.server_pids()
        server = self._server_seconds(server_pids)
        own = self._own.cpu_times()
        loadgen = own.user + own.system + own.children_user + own.children_system
        try:
            children = self._own.children(recursive=True)
        except psutil.Error:
            children = []
        loadgen += sum(_cpu_seconds(c.pid) or 0.0 for c in children if c.pid not in server_pids)
        gpu = self._gpu() if self._gpu is not None else (0.0, 0.0, 0.0)
        return Sample(time.monotonic(), server, loadgen, self._busy_seconds(), *gpu)

    def _server_seconds(self, pids: set[int]) -> float:
        """The CPU seconds of the server's processes, those that exited since the monitor started
        included (at the last reading of each): a count that only grows."""
        readings = {pid: _cpu_seconds(pid) for pid in pids}
        now = {pid: seconds for pid, seconds in readings.items() if seconds is not None}
        with self._server_lock:
            self._server_exited_s += sum(s for pid, s in self._server_seen.items() if pid not in now)
            self._server_seen = now
            return self._server_exited_s + sum(now.values())

    def _busy_seconds(self) -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        cores = self._cores if self._cores is not None else range(len(per_cpu))
        busy = 0.0
        for index in cores:
            if index < len(per_cpu):
                t = per_cpu[index]
                busy += (
                    sum(t)
                    - t.idle
                    - getattr(t, "iowait", 0.0)
                    - getattr(t, "guest", 0.0)
                    - getattr(t, "guest_nice", 0.0)
                )
        return busy


def _cpu_seconds(pid: int) -> float | None:
    """A process's own CPU seconds; None where it is gone (or cannot be read)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
