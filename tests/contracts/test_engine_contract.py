"""The load engine contract (tuner.measure._engine.LoadEngine), run against both engines.

One embedded server serves digits_forest for the whole module; each test makes its engine as
the worker does, with short windows.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tuner.errors import MeasurementError
from tuner.measure import BuiltinEngine, EngineSettings, LoadEngine, PerfAnalyzer, Probe, UsageMonitor
from tuner.model_info import ModelInfo, read_model_info
from tuner.trial import TrialSpec
from tuner.triton import RUNNER_SOURCE, build_model_config, to_pbtxt
from tuner.triton._embedded import EmbeddedServer

pytestmark = pytest.mark.integration

MODEL = "digits_forest"
SPEC = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=0, instance_count=1, cpu_threads=1)
SETTINGS = EngineSettings(window_ms=200, max_windows=3, stability_percentage=50.0)

ENGINES = ["perf_analyzer", "builtin"]


@dataclasses.dataclass
class Served:
    server: EmbeddedServer
    info: ModelInfo
    monitor: UsageMonitor

    def probe(self) -> Probe:
        return Probe(lambda: self.server.model_statistics(MODEL), self.monitor)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Iterator[Served]:
    """One embedded server with digits_forest loaded, and a usage monitor on it."""
    root = tmp_path_factory.mktemp("engines")
    version = root / "repository" / MODEL / "1"
    version.mkdir(parents=True)
    shutil.copy(digits_onnx, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    info = read_model_info(digits_onnx)
    (version.parent / "config.pbtxt").write_text(to_pbtxt(build_model_config(MODEL, info, SPEC)))
    with EmbeddedServer(root / "server", root / "repository") as server:
        server.load(MODEL)
        monitor = UsageMonitor(lambda: server.pid, interval_s=0.1)
        monitor.start()
        try:
            yield Served(server, info, monitor)
        finally:
            monitor.stop()


@pytest.fixture(params=ENGINES)
def make_engine(request: pytest.FixtureRequest, served: Served, tmp_path: Path) -> Callable[[EngineSettings], LoadEngine]:
    """Makes the engine under test, as the worker makes it, with the given settings."""

    def make(settings: EngineSettings) -> LoadEngine:
        settings = dataclasses.replace(settings, engine=request.param)
        if request.param == "builtin":
            return BuiltinEngine(served.server.grpc_url, settings, served.info, access=served.server.access)
        return PerfAnalyzer(served.server.grpc_url, tmp_path / "perf", settings, access=served.server.access)

    return make


def test_a_measurement_describes_the_windows_it_reports(make_engine: Callable[..., LoadEngine],
                                                        served: Served) -> None:
    engine = make_engine(SETTINGS)

    measured = engine.measure(MODEL, 2, served.probe())

    point = measured.point
    assert point.concurrency == 2 and point.throughput > 0
    assert 0 < point.latency_p50_ms <= point.latency_p90_ms <= point.latency_p95_ms <= point.latency_p99_ms
    assert point.latency_avg_ms > 0
    assert measured.server.requests > 0 and measured.usage.seconds > 0
    # tests/integration/test_measurement.py checks, with the machine to itself, that an exact
    # window's server statistics count exactly its requests.
    assert measured.requests is None or measured.requests > 0


def test_windows_that_never_agree_are_a_result_marked_unstable(make_engine: Callable[..., LoadEngine],
                                                               served: Served) -> None:
    # No three windows of a real server agree within a thousandth of a percent.
    engine = make_engine(dataclasses.replace(SETTINGS, stability_percentage=0.001))

    measured = engine.measure(MODEL, 1, served.probe())

    assert not measured.point.stable
    assert measured.point.throughput > 0


def test_a_load_the_server_refuses_is_a_measurement_error(make_engine: Callable[..., LoadEngine],
                                                          served: Served) -> None:
    engine = make_engine(SETTINGS)

    with pytest.raises(MeasurementError):
        engine.measure("no_such_model", 1, served.probe())

    point = engine.measure(MODEL, 3, served.probe()).point  # the same engine measures on
    assert point.concurrency == 3 and point.throughput > 0


def test_a_screen_reports_three_short_windows_whatever_their_spread(make_engine: Callable[..., LoadEngine],
                                                                    served: Served) -> None:
    # windows that would never agree: a measurement would run all ten, a screen stops at three
    engine = make_engine(dataclasses.replace(SETTINGS, stability_percentage=0.001, max_windows=10,
                                             screen_window_ms=100))

    measured = engine.screen(MODEL, 2, served.probe())

    point = measured.point
    assert point.concurrency == 2 and point.throughput > 0 and not point.stable
    assert 0 < point.latency_p50_ms <= point.latency_p90_ms <= point.latency_p95_ms <= point.latency_p99_ms
    assert measured.server.requests > 0 and measured.usage.seconds > 0
    if measured.exact_window:  # the windows themselves: three of 100 ms, not ten of 200 ms
        assert measured.usage.seconds < 1.5
