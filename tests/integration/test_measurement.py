"""Measurement against the real server: both load engines, the window's server statistics,
the concurrency search, CPU use and contamination."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tuner.measure import BuiltinEngine, EngineSettings, PerfAnalyzer, Probe, SweepPlan, UsageMonitor, write_input_json
from tuner.measure._sweep import edge
from tuner.model_info import ModelInfo, read_model_info
from tuner.trial import TrialSpec
from tuner.triton import RUNNER_SOURCE, build_model_config, to_pbtxt
from tuner.triton._embedded import EmbeddedServer
from tuner.workers import WorkerSetup
from tuner.workers._worker import Worker

# Engines' agreement, exact window counts and contamination need the machine to themselves.
pytestmark = pytest.mark.serial

SPEC = TrialSpec(max_batch_size=8, dynamic_batching=True, max_queue_delay_us=0, instance_count=1, cpu_threads=1)
SETTINGS = EngineSettings(window_ms=700, max_windows=6, stability_percentage=15.0)


class Served:
    """A server with one model loaded, its usage monitor, and a probe of both."""

    def __init__(self, server: EmbeddedServer, name: str, info: ModelInfo, monitor: UsageMonitor) -> None:
        self.server, self.name, self.info, self.monitor = server, name, info, monitor

    def probe(self) -> Probe:
        return Probe(lambda: self.server.model_statistics(self.name), self.monitor)


def _serve(tmp: Path, name: str, onnx_path: Path) -> Iterator[Served]:
    version = tmp / "repository" / name / "1"
    version.mkdir(parents=True)
    shutil.copy(onnx_path, version / "model.onnx")
    shutil.copy(RUNNER_SOURCE, version / "model.py")
    info = read_model_info(onnx_path)
    (version.parent / "config.pbtxt").write_text(to_pbtxt(build_model_config(name, info, SPEC)))
    with EmbeddedServer(tmp / "server", tmp / "repository") as server:
        server.load(name)
        monitor = UsageMonitor(lambda: server.pid, interval_s=0.1)
        monitor.start()
        try:
            yield Served(server, name, info, monitor)
        finally:
            monitor.stop()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, digits_onnx: Path) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("digits"), "digits_forest", digits_onnx)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory, text_detection_onnx: Path) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("detector"), "text_detection", text_detection_onnx)


def test_server_statistics_count_exactly_the_requests_of_the_window(digits: Served) -> None:
    engine = BuiltinEngine(digits.server.grpc_url, SETTINGS, digits.info)
    measured = engine.measure(digits.name, 4, digits.probe())
    assert measured.exact_window
    assert measured.requests is not None and measured.requests > 100
    assert measured.server.requests == measured.requests
    sizes = measured.server.batch_sizes
    assert sum(size * count for size, count in sizes.items()) == measured.requests
    point = measured.point
    assert point.server_compute_infer_ms > 0 and point.server_cpu_pct > 0 and point.loadgen_cpu_pct > 0
    assert point.latency_p50_ms <= point.latency_p99_ms


def test_both_engines_agree_on_the_same_config(detector: Served, tmp_path: Path) -> None:
    engines = {
        "builtin": BuiltinEngine(detector.server.grpc_url, SETTINGS, detector.info),
        "perf_analyzer": PerfAnalyzer(
            detector.server.grpc_url, tmp_path / "perf", SETTINGS, access=detector.server.access
        ),
    }
    # Up to three rounds, as the worker takes a disturbed window again: a busy job beside them, or a
    # neighbour on a shared machine that no process count shows, slows one engine's windows and not
    # the other's. Engines that disagree by their own making disagree in every round.
    rounds = []
    for _ in range(3):
        points = {name: engine.measure(detector.name, 1, detector.probe()).point for name, engine in engines.items()}
        summary = {name: (round(p.throughput, 1), round(p.latency_p50_ms, 2)) for name, p in points.items()}
        rounds.append(summary)
        (b_tput, b_p50), (p_tput, p_p50) = summary["builtin"], summary["perf_analyzer"]
        quiet = all(p.other_cpu_pct <= 30.0 for p in points.values())
        if quiet and abs(b_tput - p_tput) / p_tput <= 0.15 and abs(b_p50 - p_p50) / p_p50 <= 0.15:
            break
    else:
        pytest.fail(f"the engines disagreed by over 15% in each of 3 rounds: {rounds}")


def test_perf_analyzer_and_builtin_take_real_samples(digits: Served, tmp_path: Path) -> None:
    samples = {digits.info.inputs[0].name: np.random.default_rng(1).random((5, 64)).astype(np.float32)}
    from tuner.measure import request_samples

    requests = request_samples(digits.info, "random", samples)
    assert len(requests) == 5 and requests[0][digits.info.inputs[0].name].shape == (1, 64)
    data = write_input_json(tmp_path / "input.json", requests)
    perf = PerfAnalyzer(digits.server.grpc_url, tmp_path / "perf", SETTINGS, data, access=digits.server.access)
    point = perf.measure(digits.name, 2, digits.probe()).point
    assert point.throughput > 0
    builtin = BuiltinEngine(digits.server.grpc_url, SETTINGS, digits.info, samples)
    assert builtin.measure(digits.name, 2, digits.probe()).point.throughput > 0


def test_the_search_stops_at_the_latency_budget(detector: Served) -> None:
    from tuner.measure import sweep

    engine = BuiltinEngine(detector.server.grpc_url, SETTINGS, detector.info)
    first = engine.measure(detector.name, 1, detector.probe()).point
    # Past two requests in flight the two cores are busy and p99 grows with every request more.
    plan = SweepPlan(start=1, max=64, min_gain_pct=None, refine_steps=3, metric="latency_p99_ms",
                     budget=first.latency_p99_ms * 3)
    points = sweep(lambda c: engine.measure(detector.name, c, detector.probe()).point, plan)
    best, above = edge(points, plan)
    assert best is not None and above is not None, [(p.concurrency, p.latency_p99_ms) for p in points]
    assert best.latency_p99_ms <= plan.budget < above.latency_p99_ms
    assert above.concurrency > best.concurrency


@pytest.fixture
def spinner() -> Iterator[None]:
    """Two processes that keep the machine's cores busy, outside the worker's process tree."""
    code = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"
    pids = [
        int(subprocess.run(["sh", "-c", f'{sys.executable} -c "{code}" >/dev/null 2>&1 & echo $!'],
                           capture_output=True, text=True, check=True).stdout)
        for _ in range(2)
    ]
    yield
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)], check=False)


def test_a_concurrent_job_flags_the_trial(tmp_path: Path, digits_onnx: Path, spinner: None) -> None:
    setup = WorkerSetup(
        model_name="digits_forest", model_path=digits_onnx, model_info=read_model_info(digits_onnx),
        workdir=tmp_path / "worker", sweep=SweepPlan(fixed=(2,)),
        engine=EngineSettings(engine="builtin", window_ms=300, max_windows=3),
        contamination_cpu_pct=30.0, contamination_retries=1,
    )
    with Worker(setup) as worker:
        outcome = worker.evaluate(SPEC)
    assert outcome.error is None, outcome.error
    (point,) = outcome.points
    assert point.contaminated and point.other_cpu_pct > 30.0, point


def test_perf_analyzer_takes_three_windows_as_they_come_when_they_never_agree(digits: Served, tmp_path: Path) -> None:
    strict = EngineSettings(window_ms=300, max_windows=3, stability_percentage=0.001)  # windows never agree so closely
    perf = PerfAnalyzer(digits.server.grpc_url, tmp_path / "perf", strict, access=digits.server.access)
    point = perf.measure(digits.name, 2, digits.probe()).point
    assert not point.stable
    assert point.throughput > 0 and point.latency_p99_ms > 0
