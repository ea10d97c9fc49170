"""A worker owns one Triton server and its model repository, and turns TrialSpecs into outcomes.

A trial: build (or take from the cache) the model variant of the spec's precision, write the
config, load it, check its answers on the validation batch, warm up, measure, unload.

    with Worker(setup) as worker:
        outcome = worker.evaluate(spec)   # never raises for a trial's own failure

A refused config, a failed measurement or a server that died mid-trial come back as an outcome
with ``error`` set; a dead server is restarted before the next trial.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.accuracy import compare, reference_outputs
from tuner.errors import MeasurementError, ModelError, ModelLoadError, ServerStartError
from tuner.measure.perf_analyzer import PerfAnalyzer, PerfSettings
from tuner.measure.server_stats import ServerWindow, model_counters, window
from tuner.measure.warmup import infer_samples, warm_up
from tuner.model_info import ModelInfo
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec
from tuner.triton.model_config import RUNNER_SOURCE, build_model_config, to_pbtxt
from tuner.triton.server import EmbeddedServer, Ports, kill_orphans
from tuner.variants import build_variant

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class WorkerSetup:
    """The slice of a study a worker needs.

    Attributes:
        model_name: Name of the model in Triton.
        model_path: The ONNX file.
        model_info: Its inputs and outputs.
        workdir: The worker's own folder (repository, server log, reports).
        concurrency: Concurrencies to measure each config at.
        perf: perf_analyzer settings.
        warmup_requests: Requests per concurrency slot sent after each load, before measuring.
        validation: Inputs (by name, samples on the first axis) that every variant's answers are
            checked on, and that calibrate INT8 variants; None skips the check.
        address: Address the server binds to.
        ports: Fixed server ports, or None for free ones.
        startup_timeout_s: How long the server may take to become ready.
    """

    model_name: str
    model_path: Path
    model_info: ModelInfo
    workdir: Path
    concurrency: tuple[int, ...]
    perf: PerfSettings
    warmup_requests: int = 4
    validation: dict[str, np.ndarray] | None = None
    address: str = "127.0.0.1"
    ports: Ports | None = None
    startup_timeout_s: float = 60.0


class Worker:
    """Evaluates configs of one model on its own embedded Triton server."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.repository = setup.workdir / "repository"
        self.server = EmbeddedServer(
            setup.workdir / "server",
            self.repository,
            address=setup.address,
            ports=setup.ports,
            startup_timeout_s=setup.startup_timeout_s,
        )
        self._perf: PerfAnalyzer | None = None
        self._installed: Path | None = None
        self._reference: dict[str, np.ndarray] | None = None

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Lays out the model repository and starts the server.

        Processes a killed tuner left behind in this worker's folder (python-backend stubs
        outlive their server) are killed first.
        """
        if kill_orphans(self.setup.workdir):
            logger.info("killed processes a previous run left in %s", self.setup.workdir)
        version_dir = self.repository / self.setup.model_name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(RUNNER_SOURCE, version_dir / "model.py")
        self._install_variant("fp32")
        self.server.start()
        self._perf = self._make_perf()

    def stop(self) -> None:
        self.server.stop()

    def _make_perf(self) -> PerfAnalyzer:
        url = self.server.grpc_url if self.setup.perf.protocol == "grpc" else self.server.http_url
        return PerfAnalyzer(url, self.setup.workdir / "perf", self.setup.perf)

    def evaluate(self, spec: TrialSpec) -> TrialOutcome:
        """Builds the spec's variant, loads it with the spec's config, checks its answers,
        measures it at each concurrency and unloads it."""
        name = self.setup.model_name
        timings: dict[str, float] = {}
        pbtxt = to_pbtxt(build_model_config(name, self.setup.model_info, spec))
        points: list[LoadPoint] = []
        server: dict[str, ServerWindow] = {}
        accuracy: dict | None = None
        error: str | None = None
        try:
            with _timed(timings, "variant_s"):
                self._install_variant(spec.precision)
            with _timed(timings, "write_s"):
                (self.repository / name / "config.pbtxt").write_text(pbtxt)
            self._ensure_server()
            with _timed(timings, "load_s"):
                self.server.load(name)
            with _timed(timings, "accuracy_s"):
                accuracy = self._check_accuracy()
            assert self._perf is not None
            for concurrency in self.setup.concurrency:
                with _timed(timings, "warmup_s"):
                    warm_up(self.server.http_url, name, self.setup.model_info,
                            self.setup.warmup_requests * concurrency, concurrency)
                with _timed(timings, "measure_s"):
                    before = model_counters(self.server.model_statistics(name))
                    points.append(self._perf.measure(name, concurrency))
                    server[str(concurrency)] = window(before, model_counters(self.server.model_statistics(name)))
        except ModelError as exc:
            error = f"{spec.precision} variant: {exc}"
        except ModelLoadError as exc:
            error = f"Triton refused the config ({spec.accelerator}, {spec.precision}): {exc}"
        except MeasurementError as exc:
            error = f"measurement failed: {exc}"
        except ServerStartError as exc:
            error = str(exc)
        finally:
            with _timed(timings, "unload_s"):
                error = self._after_trial(name, error)
        if error:
            points = []
        return TrialOutcome(
            spec=spec, config_pbtxt=pbtxt, points=tuple(points), error=error, timings_s=timings, accuracy=accuracy,
            server={c: w.as_dict() for c, w in server.items()} if not error else {},
        )

    def _install_variant(self, precision: str) -> None:
        """Puts the model file of ``precision`` in the repository (built once, then cached)."""
        source = build_variant(
            self.setup.model_path, precision, self.setup.workdir / "variants", self.setup.validation
        )
        if source != self._installed:
            shutil.copy2(source, self.repository / self.setup.model_name / "1" / "model.onnx")
            self._installed = source

    def _check_accuracy(self) -> dict | None:
        """The loaded variant's answers on the validation batch against the FP32 model's."""
        inputs = self.setup.validation
        if not inputs:
            return None
        if self._reference is None:
            self._reference = reference_outputs(str(self.setup.model_path), inputs)
        got = infer_samples(self.server.http_url, self.setup.model_name, self.setup.model_info, inputs)
        return compare(self.setup.model_info, self._reference, got)

    def _after_trial(self, name: str, error: str | None) -> str | None:
        """Unloads the model; a server that died is noted in the error and restarted."""
        if self.server.is_alive():
            with suppress(ServerStartError):
                self.server.unload(name)
            return error
        reason = f"tritonserver died during the trial (last log line: {self.server.last_error()})"
        logger.warning("%s; restarting it", reason)
        self._restart()
        return reason if error is None else f"{reason}; {error}"

    def _ensure_server(self) -> None:
        if not self.server.is_alive():
            self._restart()

    def _restart(self) -> None:
        self.server.stop()
        self.server.start()
        self._perf = self._make_perf()


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Adds the seconds the block took to ``timings[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started
