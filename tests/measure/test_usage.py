"""CPU accounting of the usage monitor, against real busy processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tuner.measure import UsageMonitor

_SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen]:
    """A process that keeps one core busy."""
    process = subprocess.Popen([sys.executable, "-c", _SPIN])
    yield process
    process.kill()
    process.wait()


def _window(monitor: UsageMonitor, seconds: float):
    start = monitor.mark()
    time.sleep(seconds)
    return monitor.usage(start, monitor.mark())


@pytest.mark.serial  # a spinner's share of the cores: other tests' load starves it (6% of a core seen)
def test_a_busy_server_process_counts_as_server(spinner: subprocess.Popen) -> None:
    monitor = UsageMonitor(lambda: spinner.pid, interval_s=0.1)
    monitor.start()
    try:
        usage = _window(monitor, 1.5)
    finally:
        monitor.stop()
    # One spinning process: up to a core (less where the machine is shared with other jobs).
    assert 20.0 <= usage.server_cpu_pct <= 110.0, usage
    assert usage.server_cpu_pct > usage.loadgen_cpu_pct, usage
    assert usage.server_cpu_max_pct >= usage.server_cpu_pct
    assert usage.loadgen_cpu_pct < 40.0, usage


@pytest.mark.serial  # as above
def test_a_busy_stranger_counts_as_other() -> None:
    # Started through a shell that exits at once: the spinner is not this process's child.
    shell = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{_SPIN}" >/dev/null 2>&1 & echo $!'],
        capture_output=True, text=True, check=True,
    )
    stranger = int(shell.stdout.strip())
    try:
        monitor = UsageMonitor(lambda: None, interval_s=0.1)
        monitor.start()
        try:
            time.sleep(0.3)
            usage = _window(monitor, 1.5)
        finally:
            monitor.stop()
    finally:
        os.kill(stranger, signal.SIGKILL)
    assert usage.server_cpu_pct == 0.0
    assert usage.loadgen_cpu_pct < 40.0, usage
    assert usage.other_cpu_pct >= 20.0, usage


def test_server_gone_counts_zero() -> None:
    monitor = UsageMonitor(lambda: 2**22 + os.getpid(), interval_s=0.1)
    monitor.start()
    try:
        usage = _window(monitor, 0.3)
    finally:
        monitor.stop()
    assert usage.server_cpu_pct == 0.0


def test_gpu_readings_are_averaged_and_peaked() -> None:
    readings = iter([(10.0, 100.0, 50.0), (90.0, 300.0, 150.0)] + [(50.0, 200.0, 100.0)] * 1000)
    monitor = UsageMonitor(lambda: None, gpu_reader=lambda: next(readings), interval_s=10.0)
    start = monitor.mark()
    end = monitor.mark()
    usage = monitor.usage(start, end)
    assert usage.gpu_util_pct == pytest.approx(50.0)
    assert usage.gpu_util_max_pct == 90.0
    assert usage.gpu_memory_mb == 300.0
    assert usage.gpu_power_w == pytest.approx(100.0)


_PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time\\nend = time.time() + 1.0\\nwhile time.time() < end: pass'])\n"
    "child.wait()\n"
    "time.sleep(30)\n"
)


@pytest.mark.serial  # as above
def test_a_server_process_that_exits_within_the_window_keeps_its_cpu() -> None:
    """A stub (here: a child of the "server" that spins for a second and exits) that ends within a
    window: the CPU it used there counts as the server's, not as a fall of the server's total that
    reads as other processes' use."""
    server = subprocess.Popen([sys.executable, "-c", _PARENT])
    try:
        monitor = UsageMonitor(lambda: server.pid, interval_s=0.1)
        monitor.start()
        try:
            time.sleep(0.6)  # the child has spun about half its second, and the monitor has seen it
            usage = _window(monitor, 1.2)  # the child exits within it
        finally:
            monitor.stop()
    finally:
        server.kill()
        server.wait()
    assert usage.server_cpu_pct >= 15.0, usage  # the rest of the child's second, over 1.2 s
    assert usage.other_cpu_pct < usage.server_cpu_pct, usage
