"""A worker owns one Triton server and its model repository, and turns TrialSpecs into outcomes.

A trial: build (or take from the cache) the model variant of the spec's precision, write the
config (a repository model's own config with the spec's knobs set, tuner.triton.tune_config),
load it, check its answers on the validation batch, then for each concurrency of the sweep
(tuner.measure) warm up and measure with the load engine, watching the server's
statistics and CPU/GPU use (tuner.measure); unload it, or on a CPU worker leave it for the next
trial's load to replace.

A window in which other processes used material CPU is measured again, and flagged where it
stays so: a concurrent job on the same cores can halve throughput while every window agrees.

    with Worker(setup) as worker:
        outcome = worker.evaluate(spec)   # never raises for a trial's own failure

With a ``Screen`` (``evaluate(spec, screen)``) the first concurrency is first screened with a few
short windows, and a clearly hopeless config stops there (``TrialOutcome.pruned``); a screen that
stays contaminated stops nothing.

A refused config or a failed measurement comes back as an outcome with ``error`` and its kind
(``tuner.trial.Failure``) set. A server that dies mid-trial is restarted and the config measured
again, once; where it dies again the outcome is a ``Failure.SERVER``. A full disk (OSError ENOSPC
anywhere in the trial) comes back as ``Failure.DISK_FULL``, which stops the study rather than
spending a trial of its budget.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuner.config import ServerSettings
from tuner.errors import MeasurementError, ModelError, ModelLoadError, ServerStartError, VariantError
from tuner.measure import (
    BuiltinEngine,
    EngineSettings,
    GpuReader,
    LoadEngine,
    Measured,
    PerfAnalyzer,
    Probe,
    SweepPlan,
    UsageMonitor,
    infer_samples,
    measure_trusted,
    nvml_reader,
    request_samples,
    screened_sweep,
    sweep,
    warm_up,
    write_input_json,
)
from tuner.model import (
    RepositoryModel,
    build_variant,
    compare,
    install_model_file,
    reference_outputs,
    repository_model_info,
)
from tuner.model_info import Answers, ModelInfo
from tuner.trial import Failure, LoadPoint, Screen, TrialOutcome, TrialSpec, accuracy_drop
from tuner.triton import (
    RUNNER_SOURCE,
    TritonServer,
    build_model_config,
    build_native_config,
    kill_orphans,
    make_server,
    to_pbtxt,
    tune_config,
    worker_gpus,
)

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as pb
    from typing_extensions import Self  # typing.Self from Python 3.11; only the checker reads it here

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSetup:
    """The slice of a study a worker needs.

    Attributes:
        model_name: Name of the model in Triton.
        model_path: The FP32 ONNX file; None for a repository model that is not ONNX.
        model_info: Its inputs and outputs.
        workdir: The worker's own folder (repository, server log, reports).
        sweep: The concurrencies to measure each config at.
        engine: The load engine and its settings.
        warmup_requests: Requests per concurrency slot sent after each load, before measuring.
        load_samples: Real input samples for the load (by input name), or None for the
            engine's ``input_data``.
        contamination_cpu_pct: CPU of other processes (percent of a core) that makes a window
            untrusted.
        contamination_retries: Measurements again of an untrusted window.
        gpu: Whether the worker has a GPU to watch (the first of CUDA_VISIBLE_DEVICES).
        validation: Inputs (by name, samples on the first axis) that every variant's answers are
            checked on, and that calibrate INT8 variants; None skips the check.
        accuracy_metric: How the answers are judged (``model.accuracy_metric``).
        server: How the worker runs Triton (launch mode, address, ports, start-up timeout).
        index: The worker's index (picks its server under ``launch: remote``).
        repository_model: The model's folder in its repository and its own config, where the study
            names one: the folder is copied into the worker's repository and its config is each
            trial's base.
    """

    model_name: str
    model_path: Path | None
    model_info: ModelInfo
    workdir: Path
    sweep: SweepPlan
    engine: EngineSettings
    warmup_requests: int = 4
    load_samples: dict[str, np.ndarray] | None = None
    contamination_cpu_pct: float = 30.0
    contamination_retries: int = 1
    gpu: bool = False
    validation: dict[str, np.ndarray] | None = None
    accuracy_metric: str = "auto"
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    index: int = 0
    repository_model: RepositoryModel | None = None


class Worker:
    """Evaluates configs of one model on its own Triton server (the study file's `server.launch`)."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.repository = setup.workdir / "repository"
        # An ONNX file's configs are the tuner's own, whole; a repository model's may rely on Triton
        # completing them (a python model's auto_complete_config, another backend's model file).
        model = setup.repository_model
        self.server: TritonServer = make_server(
            setup.server,
            setup.workdir / "server",
            self.repository,
            gpu=worker_gpus(),
            index=setup.index,
            whole_configs=model is None or model.config_is_whole,
        )
        self._engine: LoadEngine | None = None
        self.monitor: UsageMonitor | None = None
        self._installed: Path | None = None
        self._reference: dict[str, Answers] | None = None
        self.version_dir = self.repository / setup.model_name / (model.version if model else "1")
        self._onnx_name = model.model_file.name if model else "model.onnx"
        #: An ensemble's composing models (or the models a BLS model calls), with their inputs and
        #: outputs, in the order they run.
        self._steps = {step.name: (step, repository_model_info(step)) for step in model.steps} if model else {}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Lays out the model repository and starts the server.

        Processes a killed tuner left behind in this worker's folder (python-backend stubs
        outlive their server) are killed first. A repository model's folder is copied as it is
        (each trial writes its config.pbtxt); an ONNX model gets the runner beside its file where
        the server runs it through the python backend.
        """
        if kill_orphans(self.setup.workdir):
            logger.info("killed processes a previous run left in %s", self.setup.workdir)
        warn_if_niced()
        self.lay_out()
        self.server.start()
        try:  # perf_analyzer missing, its input file unwritable: the started server goes with the error
            self._engine = self._make_engine()
            self.monitor = UsageMonitor(lambda: self.server.pid, self._gpu_reader())
            self.monitor.start()
        except BaseException:
            self.stop()
            raise

    def lay_out(self) -> None:
        """Writes the model's folder (and its composing models') into the worker's repository, as
        ``start`` does before the server starts."""
        if self.setup.repository_model is not None:
            shutil.copytree(
                self.setup.repository_model.folder, self.repository / self.setup.model_name, dirs_exist_ok=True
            )
        self.version_dir.mkdir(parents=True, exist_ok=True)  # an ensemble's may be missing: Triton wants one
        for step, _ in self._steps.values():
            shutil.copytree(step.folder, self.repository / step.name, dirs_exist_ok=True)
            if step.is_onnx:
                self._place_runner(self.repository / step.name / step.version)
        if self.setup.model_path is not None:
            self._place_runner(self.version_dir)
            self._install_variant("fp32")

    def _place_runner(self, folder: Path) -> None:
        """Puts the runner beside an ONNX file where the server runs it through the python backend."""
        runner = folder / "model.py"
        if self.server.native:  # the onnxruntime backend needs only the ONNX file
            runner.unlink(missing_ok=True)
        else:
            shutil.copy2(RUNNER_SOURCE, runner)

    def stop(self) -> None:
        """Stops the usage monitor and the server; the server stops even where the monitor fails to."""
        try:
            if self.monitor is not None:
                self.monitor.stop()
        finally:
            self.server.stop()

    def _gpu_reader(self) -> GpuReader | None:
        if not self.setup.gpu:
            return None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        try:
            return nvml_reader(int(visible), lambda: self.monitor.server_pids() if self.monitor else set())
        except Exception as exc:  # noqa: BLE001 - NVML missing or refusing: measure without the GPU
            logger.warning("GPU use not measured: %s", exc)
            return None

    def _make_engine(self) -> LoadEngine:
        s = self.setup
        if s.engine.engine == "builtin":
            return BuiltinEngine(self.server.grpc_url, s.engine, s.model_info, s.load_samples, self.server.access)
        url = self.server.grpc_url if s.engine.protocol == "grpc" else self.server.http_url
        data = None
        if s.load_samples:
            requests = request_samples(s.model_info, s.engine.input_data, s.load_samples)
            data = write_input_json(s.workdir / "perf" / "input_data.json", requests)
        return PerfAnalyzer(url, s.workdir / "perf", s.engine, data, access=self.server.access)

    def evaluate(self, spec: TrialSpec, screen: Screen | None = None) -> TrialOutcome:
        """Builds the spec's variant, loads it with the spec's config, checks its answers,
        measures it at each concurrency and unloads it.

        With a ``screen`` that has something to judge by, the first concurrency is screened first
        (``LoadEngine.screen``): where the screen shows the config hopeless, the outcome is pruned
        to the screen's point with the reason, and nothing more is measured.

        A server that dies or stops answering during the trial is restarted and the config measured
        again from the start, once: a server killed from outside (or by a neighbour's memory) is no
        fault of the config, as a Ray worker that dies is not (``RaySettings.max_attempts``). Where it
        dies again, the trial fails with both reasons.
        """
        outcome = self._evaluate_once(spec, screen)
        if outcome.failure_kind is not Failure.SERVER:
            return outcome
        # info, not a warning: the driver warns of it once the trial is told (TrialOutcome.restarted)
        logger.info("%s; measuring the config again on the restarted server", outcome.error)
        again = self._evaluate_once(spec, screen)
        if again.failure_kind is Failure.SERVER:
            return dataclasses.replace(again, error=f"{again.error} (and on the first try: {outcome.error})")
        return dataclasses.replace(again, restarted=outcome.error)

    def _evaluate_once(self, spec: TrialSpec, screen: Screen | None) -> TrialOutcome:
        name = self.setup.model_name
        timings: dict[str, float] = {}
        texts = {model_name: to_pbtxt(config) for model_name, config in self.trial_configs(spec).items()}
        points: list[LoadPoint] = []
        server: dict[str, dict] = {}
        accuracy: dict | None = None
        error: str | None = None
        failure: Failure | None = None
        pruned: str | None = None
        try:
            accuracy = self._load_and_check(spec, texts, timings)
            points, pruned = self._measure_curve(name, timings, server, screen, accuracy_drop(accuracy))
        except (ModelError, ModelLoadError, MeasurementError, ServerStartError, OSError) as exc:
            error, failure = trial_failure(exc, spec)
        finally:
            with _timed(timings, "unload_s"):
                died = self._after_trial(name, keep_loaded=error is None and not self.setup.gpu)
            if died is not None:
                error = died if error is None else f"{died}; {error}"
                failure = failure if failure == Failure.DISK_FULL else Failure.SERVER
        if error:
            points, pruned = [], None
        return TrialOutcome(
            spec=spec,
            config_pbtxt=texts[name],
            points=tuple(points),
            error=error,
            timings_s=timings,
            accuracy=accuracy,
            server=server if not error else {},
            failure=failure,
            pruned=pruned,
            step_configs={n: text for n, text in texts.items() if n != name},
        )

    def trial_configs(self, spec: TrialSpec) -> dict[str, pb.ModelConfig]:
        """The configs of ``spec`` by model name, in the order they load: the model's, or first the
        composing models' (an ensemble's steps, the models a BLS model calls) and then its own (an
        ensemble's with its ``max_batch_size`` the spec's, a BLS model's tuned to the spec)."""
        name, model = self.setup.model_name, self.setup.repository_model
        if model is None or not model.is_ensemble:
            own = self._config(name, spec, model, self.setup.model_info)
        else:
            own = model.config
            own.max_batch_size = spec.max_batch_size
        configs = {
            step_name: self._config(step_name, spec.step_specs[step_name], step, info)
            for step_name, (step, info) in self._steps.items()
        }
        return configs | {name: own}

    def _config(self, name: str, spec: TrialSpec, model: RepositoryModel | None, info: ModelInfo) -> pb.ModelConfig:
        """A model's config under ``spec``: its own config tuned to it, in the form its server runs.

        An ONNX model takes the runner's form or the onnxruntime backend's (``server.native``); any
        other model runs on its own backend, so only the tuned knobs change.
        """
        base = model.config if model is not None else None
        if model is not None and base is not None and not model.is_onnx:
            config = tune_config(base, spec)
            config.name = name
            return config
        build_config = build_native_config if self.server.native else build_model_config
        return build_config(name, info, spec, base)

    def _load_and_check(self, spec: TrialSpec, texts: dict[str, str], timings: dict[str, float]) -> dict | None:
        """Installs the variant and the configs (config.pbtxt texts by model name), loads them in order and
        checks the answers.

        Each of an ensemble's composing models is loaded itself before the ensemble: a model loaded
        again takes its new config, and loading the ensemble alone would keep those already loaded.
        """
        with _timed(timings, "variant_s"):
            # The onnxruntime backend's TensorRT takes FP16/INT8 as its precision_mode on the FP32 model.
            native_trt = self.server.native and spec.accelerator == "tensorrt"
            if self.setup.model_path is not None:
                self._install_variant("fp32" if native_trt else spec.precision)
        with _timed(timings, "write_s"):
            for model_name, text in texts.items():
                (self.repository / model_name / "config.pbtxt").write_text(text)
        self._ensure_server()
        with _timed(timings, "load_s"):
            for model_name in texts:
                self.server.load(model_name)
        with _timed(timings, "accuracy_s"):
            return self._check_accuracy()

    def _measure_curve(
        self,
        name: str,
        timings: dict[str, float],
        server: dict[str, dict],
        screen: Screen | None,
        accuracy_drop: float | None = None,
    ) -> tuple[list[LoadPoint], str | None]:
        """Warms up and measures at each concurrency of the sweep; the server's side goes to ``server``.

        Returns the points, and why the screen stopped the trial (then the one point is the screen's):
        its measurement, or the variant's ``accuracy_drop`` already checked after the load. Under the
        concurrency search with screened steps, the steps are screens (the trial's screen the first)
        and only the concurrency the search settles on is measured to stability (``screened_sweep``).
        """
        warmed: set[int] = set()

        def warm(concurrency: int) -> None:
            if concurrency in warmed:
                return
            with _timed(timings, "warmup_s"):
                warm_up(
                    self.server.http_url,
                    name,
                    self.setup.model_info,
                    self.setup.warmup_requests * concurrency,
                    concurrency,
                    self.server.access,
                    self.setup.load_samples,
                    self.setup.engine.input_data,
                )
            warmed.add(concurrency)

        def measure_at(concurrency: int) -> LoadPoint:
            warm(concurrency)
            with _timed(timings, "measure_s"):
                measured = self._measure_trusted(name, concurrency)
            server[str(concurrency)] = measured.server.as_dict() | {"exact_window": measured.exact_window}
            return measured.point

        screens: dict[int, LoadPoint] = {}

        def screen_at(concurrency: int) -> LoadPoint:
            if concurrency not in screens:
                warm(concurrency)
                with _timed(timings, "screen_s"):
                    measured = self._measure_trusted(name, concurrency, screening=True)
                server[str(concurrency)] = measured.server.as_dict() | {"exact_window": measured.exact_window}
                screens[concurrency] = measured.point
            return screens[concurrency]

        if screen is not None and (screen.judges or screen.inaccurate(accuracy_drop)):
            reason = screen.verdict(screen_at(screen.concurrency), accuracy_drop)
            if reason is not None and not screen.inaccurate(accuracy_drop):
                # A reading of three short windows can be a hiccup's (a p99 doubled by one stall on a busy
                # machine): a verdict on the load stops the trial only where a second screen repeats it.
                logger.info("%s: its screen read it hopeless (%s); screening it again", name, reason)
                del screens[screen.concurrency]
                reason = screen.verdict(screen_at(screen.concurrency), accuracy_drop)
            if reason is not None:
                logger.info("%s stopped after its screen: %s", name, reason)
                return [screens[screen.concurrency]], reason
        plan = self.setup.sweep
        if plan.fixed is None and plan.screened:
            steps = screened_sweep(lambda c: dataclasses.replace(screen_at(c), screened=True), measure_at, plan)
            return steps, None
        return sweep(measure_at, plan), None

    def _measure_trusted(self, name: str, concurrency: int, screening: bool = False) -> Measured:
        """One measurement (or screen), taken again while other processes used material CPU during it.

        Not judged where the server's processes cannot be seen (docker, remote): its CPU would
        count as theirs.
        """
        assert self._engine is not None and self.monitor is not None, "worker not started"
        steps = self._step_statistics if self._steps else None
        probe = Probe(lambda: self.server.model_statistics(name), self.monitor, steps)
        take = self._engine.screen if screening else self._engine.measure
        # Where the server's processes cannot be seen (docker, remote) they would count as strangers.
        limit = self.setup.contamination_cpu_pct if self.server.pid is not None else math.inf
        return measure_trusted(
            lambda: take(name, concurrency, probe),
            limit,
            self.setup.contamination_retries,
            f"{name} at concurrency {concurrency}",
        )

    def _step_statistics(self) -> dict[str, dict]:
        """Each composing model's statistics, by name (an ensemble's own count only the whole pipeline)."""
        return {step: self.server.model_statistics(step) for step in self._steps}

    def _install_variant(self, precision: str) -> None:
        """Puts the model file of ``precision`` in the repository (built once, then cached)."""
        assert self.setup.model_path is not None, "only an ONNX model has variants"
        source = build_variant(self.setup.model_path, precision, self.setup.workdir / "variants", self.setup.validation)
        if source != self._installed:
            # a new file in place of the old: the model may still be loaded from the old one
            install_model_file(source, self.version_dir / self._onnx_name)
            self._installed = source

    def _check_accuracy(self) -> dict | None:
        """The loaded variant's answers on the validation batch against the FP32 model's."""
        inputs = self.setup.validation
        if not inputs or self.setup.model_path is None:
            return None
        if self._reference is None:
            self._reference = reference_outputs(str(self.setup.model_path), inputs)
        got = infer_samples(
            self.server.http_url, self.setup.model_name, self.setup.model_info, inputs, self.server.access
        )
        return compare(self.setup.model_info, self._reference, got, self.setup.accuracy_metric)

    def _after_trial(self, name: str, keep_loaded: bool) -> str | None:
        """Unloads the model, unless ``keep_loaded``; a server that died is restarted, and why is returned.

        A model kept loaded is replaced by the next trial's load: Triton loads the new config, then
        retires the old instances in the background. Unloading the python backend's instances takes
        about 1.2 s each, one after the other, nearly all of it waiting for the stubs to exit (they
        used 0.05 s of CPU in 2.4 s for two); kept loaded, that wait overlaps the next trial's checks.
        A worker with a GPU unloads: two configs of a model at once may not fit in its memory.
        """
        if self.server.is_alive():
            if not keep_loaded:
                with suppress(ServerStartError):
                    for model_name in (name, *self._steps):  # an ensemble before the models it runs
                        self.server.unload(model_name)
            return None
        reason = f"tritonserver died during the trial: {self.server.last_error()}"
        logger.warning("%s; restarting it", reason)
        self._restart()
        return reason

    def _ensure_server(self) -> None:
        if not self.server.is_alive():
            self._restart()

    def _restart(self) -> None:
        self.server.stop()
        self.server.start()
        self._engine = self._make_engine()


def warn_if_niced(niceness: int | None = None) -> None:
    """Warns where a worker runs at a niceness above 0 (``niceness``; default: this process's), as a joined Ray
    cluster's workers do by default (Ray's ``worker_niceness`` is 15; the local Ray the tuner starts sets 0):
    its server and load generator inherit it, and a fast model measured so read up to 1.7x what the same
    config does at nice 0, as a deployed server runs it."""
    niceness = os.getpriority(os.PRIO_PROCESS, 0) if niceness is None else niceness
    if niceness > 0:
        logger.warning(
            "this worker runs at nice %d, and its server and load generator with it: a fast model measures up to "
            "1.7x what a server at nice 0 does; start the Ray cluster's nodes with RAY_worker_niceness=0",
            niceness,
        )


def trial_failure(exc: BaseException, spec: TrialSpec) -> tuple[str, Failure]:
    """The error text and kind of a trial that raised ``exc``.

    A full disk is looked for in the whole chain of causes (a variant builder or the server's
    launcher wraps the OSError); any other OSError is not a trial's failure and is raised again.
    """
    full = disk_full_error(exc)
    if full is not None:
        return f"disk full: {full}", Failure.DISK_FULL
    if isinstance(exc, ModelError):
        return f"{spec.precision} variant: {exc}", Failure.VARIANT if isinstance(exc, VariantError) else Failure.CONFIG
    if isinstance(exc, ModelLoadError):
        return f"Triton refused the config ({spec.accelerator}, {spec.precision}): {exc}", Failure.CONFIG
    if isinstance(exc, MeasurementError):
        return f"measurement failed: {exc}", Failure.CONFIG
    if isinstance(exc, ServerStartError):
        return str(exc), Failure.SERVER
    raise exc


def disk_full_error(exc: BaseException | None) -> OSError | None:
    """The OSError(ENOSPC) that ``exc`` is or was raised from, if any."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return exc
        exc = exc.__cause__
    return None


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Adds the seconds the block took to ``timings[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started
