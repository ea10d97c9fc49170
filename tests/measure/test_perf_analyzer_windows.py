"""perf_analyzer on a config slower than its window: the window is made longer, not the trial failed.

A python-backend model that takes 300 ms per request, on the embedded server: at concurrency 1
a 100 ms window holds no finished request, and perf_analyzer fails with "No valid requests
recorded within time interval". And a perf_analyzer that dies of a signal (its gRPC client
aborts now and then) is run once more before the trial fails.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tuner.errors import MeasurementError
from tuner.measure import EngineSettings, PerfAnalyzer, Probe, UsageMonitor
from tuner.triton._embedded import EmbeddedServer

pytestmark = pytest.mark.integration

MODEL = "slow"
CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]
output [{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }]
instance_group [{ count: 1 kind: KIND_CPU }]
"""
SOURCE = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.3)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""
#: 1 and 2 requests in a window differ by 2x: any spread up to 3x counts as stable.
SETTINGS = EngineSettings(engine="perf_analyzer", window_ms=100, max_windows=3, stability_percentage=200.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, UsageMonitor]]:
    root = tmp_path_factory.mktemp("slow")
    version = root / "repository" / MODEL / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(SOURCE)
    (version.parent / "config.pbtxt").write_text(CONFIG)
    with EmbeddedServer(root / "server", root / "repository") as server:
        server.load(MODEL)
        monitor = UsageMonitor(lambda: server.pid, interval_s=0.1)
        monitor.start()
        try:
            yield server, monitor
        finally:
            monitor.stop()


def _engine(server: EmbeddedServer, folder: Path, settings: EngineSettings) -> PerfAnalyzer:
    return PerfAnalyzer(server.grpc_url, folder, settings, access=server.access)


def test_a_window_that_holds_no_finished_request_is_measured_again_with_longer_ones(
    served: tuple[EmbeddedServer, UsageMonitor], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, monitor = served
    engine = _engine(server, tmp_path, SETTINGS)

    with caplog.at_level("INFO", logger="tuner.measure._perf_analyzer"):
        measured = engine.measure(MODEL, 1, Probe(lambda: server.model_statistics(MODEL), monitor))

    assert 1.0 < measured.point.throughput < 4.0  # 300 ms a request, one at a time
    assert "a 100 ms window of slow at concurrency 1 held no finished request; measuring with 400 ms windows" in (
        caplog.text
    )


def test_a_config_slower_than_the_longest_window_fails_saying_so(
    served: tuple[EmbeddedServer, UsageMonitor], tmp_path: Path
) -> None:
    server, monitor = served
    engine = _engine(server, tmp_path, dataclasses.replace(SETTINGS, window_ms=10))

    with pytest.raises(MeasurementError, match="no request of slow at concurrency 1 finished within a 160 ms window"):
        engine.measure(MODEL, 1, Probe(lambda: server.model_statistics(MODEL), monitor))


def _abort_perf_analyzer(binary: Path, times: int) -> threading.Thread:
    """Sends SIGABRT to the next ``times`` perf_analyzer runs this process starts, each once it has run a moment."""

    def abort() -> None:
        aborted: set[int] = set()
        deadline = time.monotonic() + 60
        while len(aborted) < times and time.monotonic() < deadline:
            for child in psutil.Process().children():
                if child.pid not in aborted and child.name() == binary.name[:15]:
                    time.sleep(0.5)
                    child.send_signal(signal.SIGABRT)
                    aborted.add(child.pid)
            time.sleep(0.05)

    thread = threading.Thread(target=abort, daemon=True)
    thread.start()
    return thread


def test_a_perf_analyzer_that_dies_of_a_signal_is_run_once_more(
    served: tuple[EmbeddedServer, UsageMonitor], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, monitor = served
    engine = _engine(server, tmp_path, dataclasses.replace(SETTINGS, window_ms=700))
    aborter = _abort_perf_analyzer(engine.binary, times=1)

    with caplog.at_level("WARNING", logger="tuner.measure._perf_analyzer"):
        measured = engine.measure(MODEL, 2, Probe(lambda: server.model_statistics(MODEL), monitor))

    aborter.join(timeout=5)
    assert "perf_analyzer died of signal 6 measuring slow" in caplog.text
    assert 2.0 < measured.point.throughput < 8.0  # two requests of 300 ms at a time, one instance: ~3.3/s


def test_a_perf_analyzer_that_dies_twice_fails_the_measurement(
    served: tuple[EmbeddedServer, UsageMonitor], tmp_path: Path
) -> None:
    server, monitor = served
    engine = _engine(server, tmp_path, dataclasses.replace(SETTINGS, window_ms=700))
    _abort_perf_analyzer(engine.binary, times=2)

    with pytest.raises(MeasurementError, match=r"perf_analyzer failed \(exit -6\)"):
        engine.measure(MODEL, 2, Probe(lambda: server.model_statistics(MODEL), monitor))
