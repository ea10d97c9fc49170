"""Typed values that flow from the search space through a worker back to the study."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any


class InstanceKind(str, enum.Enum):
    """Where Triton places a model instance."""

    CPU = "KIND_CPU"
    GPU = "KIND_GPU"


#: The ONNX Runtime execution provider of each accelerator but ``none`` (the device's default provider).
ACCELERATOR_PROVIDERS: dict[str, str] = {
    "openvino": "OpenVINOExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def execution_provider(accelerator: str, kind: InstanceKind) -> str:
    """The ONNX Runtime provider that runs instances of this kind on this accelerator.

    ``none`` is the device's default: the CPU provider on the CPU, CUDA on a GPU. OpenVINO runs on
    the CPU whatever the kind.
    """
    if accelerator == "none":
        return "CUDAExecutionProvider" if kind is InstanceKind.GPU else "CPUExecutionProvider"
    return ACCELERATOR_PROVIDERS[accelerator]


class Failure(str, enum.Enum):
    """Why a trial failed, as a kind the study acts on (the text of ``TrialOutcome.error`` is for people).

    ``CONFIG``: the config, its variant or its measurement failed: a FAIL trial, the study goes on.
    ``VARIANT``: the model has no variant of the config's precision (tuner.errors.VariantError): a FAIL
    trial, and no other config of that precision is proposed, as each would fail the same way.
    ``SERVER``: the server died or did not start during the trial, and again when the worker restarted it
    and measured the config once more: a FAIL trial, the server restarts.
    ``WORKER``: the worker died, hung past the trial timeout, or raised something unexpected.
    ``DISK_FULL``: a disk of the worker is full: no config is to blame; the study stops and the
    trial is stored to run again.
    """

    CONFIG = "config"
    VARIANT = "variant"
    SERVER = "server"
    WORKER = "worker"
    DISK_FULL = "disk_full"


@dataclass(frozen=True)
class TrialSpec:
    """One configuration to measure: the Triton knobs and the runner's settings.

    Attributes:
        max_batch_size: Triton's ``max_batch_size`` for the model.
        dynamic_batching: Whether the dynamic batcher is on.
        max_queue_delay_us: The batcher's queue delay; ignored when batching is off.
        instance_count: Model instances in the instance group.
        cpu_threads: ONNX Runtime intra-op threads of each instance.
        kind: Where the instances run.
        accelerator: ``none`` (ONNX Runtime's default provider on the device), ``openvino``,
            ``cuda`` or ``tensorrt``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        performance_hint: The OpenVINO backend's ``PERFORMANCE_HINT`` (``latency`` or
            ``throughput``); empty to keep the model's own.
        steps: For an ensemble, each composing model's spec by model name, in the order the
            ensemble runs them; its own knobs then are its scheduler's (``max_batch_size``, which
            no step's may be below). For a python model that calls others through BLS, theirs, its
            own knobs being the calling model's. Empty for a single model.
    """

    max_batch_size: int
    dynamic_batching: bool
    max_queue_delay_us: int
    instance_count: int
    cpu_threads: int = 1
    kind: InstanceKind = InstanceKind.CPU
    accelerator: str = "none"
    precision: str = "fp32"
    performance_hint: str = ""
    steps: tuple[tuple[str, TrialSpec], ...] = ()

    def key(self) -> str:
        """A canonical text that is equal for configs that behave the same on the server."""
        return json.dumps(self._key_values(), sort_keys=True)

    def _key_values(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "steps"}
        values["kind"] = self.kind.value
        if not self.dynamic_batching:
            values["max_queue_delay_us"] = 0
        if not self.performance_hint:  # absent where not set, so a key stays what it was before the knob
            del values["performance_hint"]
        if self.steps:  # absent for a single model, so its key stays what it was
            values["steps"] = [[name, step._key_values()] for name, step in self.steps]
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrialSpec:
        """The spec of a key's JSON (``json.loads(spec.key())``)."""
        steps = tuple((name, cls.from_json(step)) for name, step in values.get("steps", []))
        kind = InstanceKind(values.get("kind", InstanceKind.CPU.value))
        return cls(**{**values, "kind": kind, "steps": steps})

    @property
    def step_specs(self) -> dict[str, TrialSpec]:
        """The composing models' specs by name (empty for a single model)."""
        return dict(self.steps)

    @property
    def cpu_threads_used(self) -> int:
        """Threads the config runs on the CPU at once: instances x threads, over every composing model of a
        pipeline (an ensemble's steps, or the models a BLS model calls).

        Instances on a GPU count none, except OpenVINO's, which runs on the CPU whatever the kind.
        """
        if self.steps:
            return sum(step.cpu_threads_used for _, step in self.steps)
        on_cpu = self.kind is InstanceKind.CPU or self.accelerator == "openvino"
        return self.instance_count * self.cpu_threads if on_cpu else 0


@dataclass(frozen=True)
class LoadPoint:
    """What the load generator measured at one concurrency.

    Latencies are in milliseconds, throughput in inferences per second. The server-side
    times are per request, averaged over the measured window. A ``screened`` point was measured in
    the screen's short windows only, as a step of the concurrency search: it shows where to measure,
    and a trial is not judged by it where a point measured to stability exists.
    """

    concurrency: int
    throughput: float
    latency_avg_ms: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    client_send_ms: float = 0.0
    client_recv_ms: float = 0.0
    server_queue_ms: float = 0.0
    server_compute_input_ms: float = 0.0
    server_compute_infer_ms: float = 0.0
    server_compute_output_ms: float = 0.0
    throughput_spread_pct: float = 0.0
    server_cpu_pct: float = 0.0
    server_cpu_max_pct: float = 0.0
    loadgen_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0
    gpu_util_pct: float = 0.0
    gpu_util_max_pct: float = 0.0
    gpu_memory_mb: float = 0.0
    gpu_power_w: float = 0.0
    stable: bool = True
    loadgen_saturated: bool = False
    contaminated: bool = False
    screened: bool = False

    def metrics(self) -> dict[str, float]:
        """The point's numbers by metric name (see LOAD_METRICS), for objectives and constraints."""
        return {name: float(getattr(self, name)) for name in LOAD_METRICS}

    def as_dict(self) -> dict[str, Any]:
        """Every field, concurrency and stability included, for storage and JSON."""
        return dataclasses.asdict(self)


#: Metrics measured under load, one value per concurrency.
LOAD_METRICS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(LoadPoint) if f.name != "concurrency" and f.type != "bool"
)
#: Metrics of the model variant's answers against the FP32 model's (see tuner.model).
ACCURACY_METRICS: tuple[str, ...] = ("accuracy_drop",)
#: Metric names a study may use as objectives or constraints.
METRICS: tuple[str, ...] = LOAD_METRICS + ACCURACY_METRICS


def accuracy_drop(accuracy: dict[str, Any] | None) -> float | None:
    """The accuracy drop of a variant's checked answers (see tuner.model.compare), or None where not checked."""
    return None if accuracy is None else accuracy.get("accuracy_drop")


@dataclass(frozen=True)
class TrialOutcome:
    """The result of evaluating one TrialSpec on a worker.

    Attributes:
        spec: What was measured.
        config_pbtxt: The config.pbtxt text the server was given.
        points: One LoadPoint per concurrency measured, in the order measured.
        error: Why the trial failed, or None when it succeeded.
        timings_s: Seconds spent per phase (variant, write, load, accuracy, warm-up, measure, unload).
        accuracy: The variant's answers against the FP32 model's (see tuner.model), when checked.
        server: By concurrency, what the server did while measured (see tuner.measure).
        failure: The kind of failure where ``error`` is set (CONFIG where the maker did not say).
        pruned: Why the trial stopped after its screening measurement (see ``Screen``), or None
            where it was measured in full. A pruned outcome has one point, the screen's.
        step_configs: For an ensemble, each composing model's config.pbtxt text by name, in the
            order they loaded (``config_pbtxt`` is the ensemble's own).
        restarted: Why the server was restarted during the trial (it died), where the config was then
            measured again from the start on the restarted server.
    """

    spec: TrialSpec
    config_pbtxt: str
    points: tuple[LoadPoint, ...] = ()
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    server: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: Failure | None = None
    pruned: str | None = None
    step_configs: dict[str, str] = field(default_factory=dict)
    restarted: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or not self.points

    @property
    def accuracy_drop(self) -> float | None:
        """The checked variant's accuracy drop (see tuner.model.compare), or None where not checked."""
        return accuracy_drop(self.accuracy)

    @property
    def failure_kind(self) -> Failure | None:
        """The kind of failure, or None for a trial that succeeded."""
        if not self.failed:
            return None
        return self.failure or Failure.CONFIG

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for logs and the CLI."""
        return {
            "spec": json.loads(self.spec.key()),
            "error": self.error,
            "failure": self.failure_kind.value if self.failure_kind else None,
            "pruned": self.pruned,
            "points": [p.as_dict() for p in self.points],
            "timings_s": dict(self.timings_s),
            "accuracy": self.accuracy,
            "server": self.server,
        }


@dataclass(frozen=True)
class Screen:
    """When a trial stops after its first, short measurement: the study's rule for a clearly hopeless
    config, with the figures the study knows when it submits the trial (``load.early_stop``).

    A worker measures the screen at the first concurrency of the trial's sweep (``concurrency``) and
    stops there where ``verdict`` gives a reason; otherwise it measures to stability as usual.

    Attributes:
        concurrency: The concurrency the screen is measured at.
        latency_metric / latency_budget: The study's latency constraint, or None where the latency
            is not judged (no budget, or the screen's concurrency is not the sweep's lowest).
        latency_factor: The latency is hopeless above this many times its budget.
        incumbent: The best throughput a feasible config has measured at ``concurrency`` so far, or
            None where throughput is not judged (none yet, or throughput is no maximized objective).
        throughput_share: The throughput is hopeless below this share of the incumbent's.
        accuracy_bound: The study's bound on ``accuracy_drop``, or None where it has none. A variant
            whose answers were checked over it is hopeless at any load: its accuracy is the
            variant's, whatever the server's knobs.
    """

    concurrency: int
    latency_metric: str | None = None
    latency_budget: float | None = None
    latency_factor: float = 2.0
    incumbent: float | None = None
    throughput_share: float = 0.5
    accuracy_bound: float | None = None

    @property
    def judges(self) -> bool:
        """Whether there is anything to judge a screen's measurement against."""
        return self.latency_budget is not None or self.incumbent is not None

    def inaccurate(self, accuracy_drop: float | None) -> bool:
        """Whether the variant's checked ``accuracy_drop`` is over the bound."""
        return self.accuracy_bound is not None and accuracy_drop is not None and accuracy_drop > self.accuracy_bound

    def verdict(self, point: LoadPoint, accuracy_drop: float | None = None) -> str | None:
        """Why ``point``, the screen's measurement, or ``accuracy_drop``, the loaded variant's checked
        answers, show the config hopeless; None where they do not.

        A point other processes disturbed (``contaminated``) shows nothing: it is no evidence to stop
        on. The accuracy does not depend on the load, so it is judged whatever the point.
        """
        if self.inaccurate(accuracy_drop):
            assert accuracy_drop is not None and self.accuracy_bound is not None
            return (
                f"accuracy drop {_number(accuracy_drop)} over the {_number(self.accuracy_bound)} bound: "
                "the variant's answers, whatever the load"
            )
        if point.contaminated:
            return None
        if self.latency_metric is not None and self.latency_budget is not None:
            value = float(getattr(point, self.latency_metric))
            if value > self.latency_factor * self.latency_budget:
                return (
                    f"{_metric_words(self.latency_metric)} {_number(value)} ms in the screening window, "
                    f"{_ratio(value / self.latency_budget)} the {_number(self.latency_budget)} ms budget"
                )
        if self.incumbent is not None and point.throughput < self.throughput_share * self.incumbent:
            return (
                f"{_number(point.throughput)} infer/s in the screening window, "
                f"{_ratio(point.throughput / self.incumbent)} the best so far at concurrency {self.concurrency} "
                f"({_number(self.incumbent)})"
            )
        return None


def screened(outcome: TrialOutcome, screen: Screen | None) -> TrialOutcome:
    """A full outcome judged by ``screen`` on its point at the screen's concurrency, as a worker's screen
    would have judged it: pruned to that point where hopeless, else as it was.

    For pools that answer from measurements already taken (a replay, tests' scripted pool).
    """
    if screen is None or outcome.failed:
        return outcome
    point = next((p for p in outcome.points if p.concurrency == screen.concurrency), outcome.points[0])
    reason = screen.verdict(point, outcome.accuracy_drop)
    if reason is None:
        return outcome
    server = {k: v for k, v in outcome.server.items() if k == str(point.concurrency)}
    return dataclasses.replace(outcome, points=(point,), server=server, pruned=reason)


def _metric_words(metric: str) -> str:
    """``latency_p99_ms`` -> ``p99``, ``latency_avg_ms`` -> ``mean latency``."""
    name = metric.removeprefix("latency_").removesuffix("_ms")
    return "mean latency" if name == "avg" else name


def _ratio(value: float) -> str:
    """2.7x, 0.4x, 4,978x."""
    return f"{value:.1f}x" if value < 10 else f"{value:,.0f}x"


def _number(value: float) -> str:
    """412, 1,030, 2.35, 0.0812: thousands grouped, three significant digits below 100."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
