"""A worker owns one Triton server and its model repository, and turns TrialSpecs into outcomes.

    with Worker(setup) as worker:
        outcome = worker.evaluate(spec)   # never raises for a trial's own failure

A refused config, a failed measurement or a server that died mid-trial come back as an outcome
with ``error`` set; a dead server is restarted before the next trial.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tuner.errors import MeasurementError, ModelLoadError, ServerStartError
from tuner.measure.perf_analyzer import PerfAnalyzer, PerfSettings
from tuner.measure.warmup import warm_up
from tuner.model_info import ModelInfo
from tuner.trial import LoadPoint, TrialOutcome, TrialSpec
from tuner.triton.model_config import RUNNER_SOURCE, build_model_config, to_pbtxt
from tuner.triton.server import EmbeddedServer, Ports

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

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Lays out the model repository and starts the server."""
        version_dir = self.repository / self.setup.model_name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(RUNNER_SOURCE, version_dir / "model.py")
        model_file = version_dir / "model.onnx"
        if not model_file.exists() or model_file.stat().st_size != self.setup.model_path.stat().st_size:
            shutil.copy2(self.setup.model_path, model_file)
        self.server.start()
        self._perf = self._make_perf()

    def stop(self) -> None:
        self.server.stop()

    def _make_perf(self) -> PerfAnalyzer:
        url = self.server.grpc_url if self.setup.perf.protocol == "grpc" else self.server.http_url
        return PerfAnalyzer(url, self.setup.workdir / "perf", self.setup.perf)

    def evaluate(self, spec: TrialSpec) -> TrialOutcome:
        """Loads ``spec`` into the server, measures it at each concurrency, unloads it."""
        name = self.setup.model_name
        timings: dict[str, float] = {}
        started = time.perf_counter()
        pbtxt = to_pbtxt(build_model_config(name, self.setup.model_info, spec))
        (self.repository / name / "config.pbtxt").write_text(pbtxt)
        timings["write_s"] = time.perf_counter() - started
        points: list[LoadPoint] = []
        error: str | None = None
        try:
            self._ensure_server()
            phase = time.perf_counter()
            self.server.load(name)
            timings["load_s"] = time.perf_counter() - phase
            assert self._perf is not None
            timings["warmup_s"] = timings["measure_s"] = 0.0
            for concurrency in self.setup.concurrency:
                phase = time.perf_counter()
                warm_up(self.server.http_url, name, self.setup.model_info,
                        self.setup.warmup_requests * concurrency, concurrency)
                timings["warmup_s"] += time.perf_counter() - phase
                phase = time.perf_counter()
                points.append(self._perf.measure(name, concurrency))
                timings["measure_s"] += time.perf_counter() - phase
        except ModelLoadError as exc:
            error = f"Triton refused the config: {exc}"
        except MeasurementError as exc:
            error = f"measurement failed: {exc}"
        except ServerStartError as exc:
            error = str(exc)
        finally:
            phase = time.perf_counter()
            error = self._after_trial(name, error)
            timings["unload_s"] = time.perf_counter() - phase
        if error:
            points = []
        return TrialOutcome(spec=spec, config_pbtxt=pbtxt, points=tuple(points), error=error, timings_s=timings)

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
