"""A stored study read into typed values: the one place that knows how trials are stored.

    stored = read_study(study, store)
    stored.trials[0].point           # the LoadPoint trial 0 was judged by
    stored.trial(3).failed_constraints()

Optuna keeps params, values and constraints; the tuner adds user attributes (``ATTR_*``, written
by tuner.study) and its own tables (tuner.storage._store). Every reader (the CLI, the API, the reports,
the export, compare, the landscape recorder, the dashboard) reads through here, so the names
below appear nowhere else but in the study loop that writes them. What a set of trials says
about configs (their medians, the front, the recommendation) is tuner.study's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import ConfigError
from tuner.storage._store import Store, TrialRecord
from tuner.trial import LoadPoint

# Trial attributes.
ATTR_METRICS = "metrics"
ATTR_SPEC_KEY = "spec_key"
ATTR_FAIL_REASON = "fail_reason"
ATTR_NO_VARIANT = "no_variant"  # a FAIL trial's precision where the model has no variant of it (Failure.VARIANT)
ATTR_PRUNED_REASON = "pruned_reason"
ATTR_REUSED_FROM = "reused_from"
ATTR_DEFAULT = "default_config"
ATTR_INTERRUPTED = "interrupted"
ATTR_WORKER = "worker"
ATTR_ACCURACY = "accuracy"
ATTR_SERVER = "server"
ATTR_REMEASURE_OF = "remeasure_of"
ATTR_TIMINGS = "timings_s"
ATTR_SERVER_RESTARTED = "server_restarted"
ATTR_WARM_START = "warm_start"
# Study attributes.
ATTR_STUDY_FILE = "study_file"
ATTR_WORKER_CORES = "worker_cores"
ATTR_MODEL_BACKEND = "model_backend"
ATTR_MODEL_DIGEST = "model_sha256"
ATTR_WORKERS = "workers"
ATTR_VERIFICATIONS = "verifications"
ATTR_WARM_START_FROM = "warm_start_from"

_POINT_FIELDS = frozenset(f.name for f in fields(LoadPoint))


def point_of(metrics: Mapping[str, Any]) -> LoadPoint | None:
    """The LoadPoint a trial's metrics hold (the point's fields and more); None where fields are missing."""
    try:
        return LoadPoint(**{k: v for k, v in metrics.items() if k in _POINT_FIELDS})
    except TypeError:
        return None


@dataclass(frozen=True)
class ConstraintMiss:
    """A constraint a measurement broke, and by how much.

    Attributes:
        metric: The constrained metric.
        value: What was measured.
        bound: The bound it broke.
        side: ``max`` (the value is over it) or ``min`` (under it).
    """

    metric: str
    value: float
    bound: float
    side: str

    @property
    def excess(self) -> float:
        return self.value - self.bound if self.side == "max" else self.bound - self.value

    @property
    def excess_pct(self) -> float | None:
        return 100.0 * self.excess / abs(self.bound) if self.bound else None

    def text(self) -> str:
        """``latency_p99_ms 61.2 > max 50 (+22%)``."""
        sign = ">" if self.side == "max" else "<"
        pct = self.excess_pct
        by = f" (+{pct:.0f}%)" if pct is not None else f" (by {self.excess:.4g})"
        return f"{self.metric} {self.value:.4g} {sign} {self.side} {self.bound:g}{by}"


Bounds = Mapping[str, Mapping[str, float | None]]


def misses(metrics: Mapping[str, Any], bounds: Bounds) -> list[ConstraintMiss]:
    """The constraints of ``bounds`` (``{metric: {"min": .., "max": ..}}``) that ``metrics`` break."""
    found = []
    for metric, bound in bounds.items():
        value = metrics.get(metric)
        if value is None:
            continue
        high, low = bound.get("max"), bound.get("min")
        if high is not None and value > high:
            found.append(ConstraintMiss(metric, float(value), float(high), "max"))
        if low is not None and value < low:
            found.append(ConstraintMiss(metric, float(value), float(low), "min"))
    return found


@dataclass(frozen=True)
class StoredTrial:
    """One stored trial: one load of one config (or a copy of another trial's, where reused).

    Attributes:
        number: The trial number.
        trial_id: Optuna's id, unique in the storage (the tuner's rows are keyed by it).
        state: Optuna's state.
        params: The sampler's params (a WAITING trial's: the params it was queued with).
        values: The objectives' values, for COMPLETE trials.
        constraints: By metric, <= 0 where the bound held, the excess otherwise.
        metrics: Every metric at the point the trial was judged by.
        spec_key: The canonical text of the config (``TrialSpec.key``): equal for equal configs.
        is_default: The model's default config.
        reused_from: The trial whose result this one copies (the config was measured before).
        remeasure_of: The trial whose config this one measured again, with a fresh load.
        interrupted: The tuner stopped while it ran; its config ran again later.
        fail_reason: Why it failed.
        pruned_reason: Why it stopped after its screening measurement (PRUNED); ``metrics`` then
            holds the screen's point.
        server_restarted: Why its server was restarted while it ran (the server died); its config was
            then measured again from the start.
        accuracy: The variant's answers against FP32's (see tuner.model), when checked.
        server: By concurrency, what the server did while measured.
        worker: The worker that measured it.
        timings_s: Seconds per phase.
        datetime_start: When it started.
        datetime_complete: When it finished.
        record: The tuner's rows (config.pbtxt, spec, every point), where read.
    """

    number: int
    trial_id: int
    state: TrialState
    params: dict[str, Any]
    values: tuple[float, ...] | None = None
    constraints: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    spec_key: str | None = None
    is_default: bool = False
    reused_from: int | None = None
    remeasure_of: int | None = None
    interrupted: bool = False
    fail_reason: str | None = None
    pruned_reason: str | None = None
    server_restarted: str | None = None
    accuracy: dict[str, Any] | None = None
    server: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker: int | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    datetime_start: dt.datetime | None = None
    datetime_complete: dt.datetime | None = None
    record: TrialRecord | None = None

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE

    @property
    def pruned(self) -> bool:
        return self.state == TrialState.PRUNED

    @property
    def reason(self) -> str | None:
        """Why it measured nothing in full: the failure, or what its screen showed."""
        return self.pruned_reason if self.pruned else self.fail_reason

    @property
    def feasible(self) -> bool:
        """COMPLETE with every constraint held (as Optuna judges it)."""
        return self.complete and all(v <= 0.0 for v in self.constraints.values())

    @property
    def is_load(self) -> bool:
        """A measurement of its own: COMPLETE and not a copy of another trial's result."""
        return self.complete and self.reused_from is None and self.values is not None

    @property
    def counted(self) -> bool:
        """Counts against the trial budget: finished, not interrupted, not a re-measurement."""
        finished = self.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        return finished and not self.interrupted and self.remeasure_of is None

    @property
    def config_key(self) -> str:
        """Equal for trials of the same config: the spec key, else the params."""
        return self.spec_key or json.dumps(self.params, sort_keys=True, default=str)

    @property
    def point(self) -> LoadPoint | None:
        """The point the trial was judged by, for COMPLETE trials the tuner measured."""
        return point_of(self.metrics) if self.complete and self.metrics else None

    @property
    def curve(self) -> tuple[LoadPoint, ...]:
        """Every point measured, by concurrency."""
        return tuple(sorted(self.record.points, key=lambda p: p.concurrency)) if self.record else ()

    @property
    def server_window(self) -> dict[str, Any] | None:
        """The server's window at the judged point's concurrency."""
        point = self.point
        return self.server.get(str(point.concurrency)) if point else None

    @property
    def spec(self) -> dict[str, Any]:
        """The whole config: the stored spec, else the params."""
        return dict(self.record.spec) if self.record and self.record.spec else dict(self.params)

    def failed_constraints(self, bounds: Bounds) -> list[ConstraintMiss]:
        """The study's constraints (``bounds``) this trial's judged point broke."""
        return misses(self.metrics, bounds) if self.complete else []


def read_trial(trial: FrozenTrial, record: TrialRecord | None = None) -> StoredTrial:
    """One Optuna trial, with the tuner's rows for it if read, as a StoredTrial."""
    attrs = trial.user_attrs
    reused, again, worker = attrs.get(ATTR_REUSED_FROM), attrs.get(ATTR_REMEASURE_OF), attrs.get(ATTR_WORKER)
    values = tuple(trial.values) if trial.values is not None else None
    return StoredTrial(
        number=trial.number,
        trial_id=trial._trial_id,
        state=trial.state,
        # a WAITING trial (a config queued to run again) holds its params as Optuna's fixed params until asked
        params=dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {}),
        values=values,
        constraints=dict(trial.constraints),
        metrics=dict(attrs.get(ATTR_METRICS) or {}),
        spec_key=attrs.get(ATTR_SPEC_KEY),
        is_default=bool(attrs.get(ATTR_DEFAULT)),
        reused_from=int(reused) if reused is not None else None,
        remeasure_of=int(again) if again is not None else None,
        interrupted=bool(attrs.get(ATTR_INTERRUPTED)),
        fail_reason=attrs.get(ATTR_FAIL_REASON)
        or (record.error if record and trial.state == TrialState.FAIL else None),
        pruned_reason=attrs.get(ATTR_PRUNED_REASON),
        server_restarted=attrs.get(ATTR_SERVER_RESTARTED),
        accuracy=attrs.get(ATTR_ACCURACY),
        server=dict(attrs.get(ATTR_SERVER) or {}),
        worker=int(worker) if worker is not None else None,
        timings_s=dict(attrs.get(ATTR_TIMINGS) or {}),
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        record=record,
    )


def read_trials(trials: Sequence[FrozenTrial], store: Store | None) -> list[StoredTrial]:
    """Trials with their rows (one query for all), or without where ``store`` is None."""
    records = store.records(t._trial_id for t in trials) if store is not None else {}
    return [read_trial(t, records.get(t._trial_id)) for t in trials]


@dataclass(frozen=True)
class StudyInfo:
    """What a study stores about itself.

    Attributes:
        name: The study's name.
        directions: ``maximize``/``minimize`` per objective.
        metric_names: The objectives' metrics (``objective_N`` where none were set).
        study_file: The study file it last ran with (storage password masked), or empty.
        worker_cores: Cores per worker.
        model_backend: The backend that serves the model (``onnxruntime`` for an ONNX file), where stored.
        workers: The workers of its last run (index, node, cores).
        verifications: Checks of its recommendation on a fresh server (``tuner verify``), oldest first.
        warm_start_from: The earlier studies whose best configs it started from (``search.warm_start.from``).
        model_digest: The SHA-256 of the model its trials measured (``StudyModel.digest``), where stored.
    """

    name: str
    directions: tuple[str, ...]
    metric_names: tuple[str, ...]
    study_file: dict[str, Any] = field(default_factory=dict)
    worker_cores: int | None = None
    model_backend: str | None = None
    workers: tuple[dict[str, Any], ...] = ()
    verifications: tuple[dict[str, Any], ...] = ()
    warm_start_from: tuple[str, ...] = ()
    model_digest: str | None = None

    def check_model(self, digest: str, then: str) -> None:
        """Refuses a model other than the one the study's trials measured (``digest``, its
        ``StudyModel.digest``); ``then`` says what to do instead. A study that stored none passes.

        Raises:
            ConfigError: the model's files changed since the study measured it.
        """
        if self.model_digest is not None and self.model_digest != digest:
            raise ConfigError(
                f"model: the model's files changed since the trials of study {self.name!r} measured them (SHA-256 "
                f"{self.model_digest[:12]}..., now {digest[:12]}...): {then}"
            )

    def check_bounds(self, bounds: Bounds, then: str) -> None:
        """Refuses constraints (``bounds``, in the form of the ``bounds`` property) other than those the
        study's trials were judged against: each trial's feasibility was stored as it finished, so a changed
        bound would judge the trials of one study by two rules. ``then`` says what to do instead. A study
        that stored no study file passes.

        Raises:
            ConfigError: a constraint was added, removed or changed since.
        """
        if self.study_file and _limits(self.bounds) != _limits(bounds):
            raise ConfigError(
                f"constraints: the trials of study {self.name!r} were judged against {bounds_text(self.bounds)}, "
                f"and this file gives {bounds_text(bounds)}: {then}"
            )

    def check_inputs(self, inputs: list[dict[str, Any]], then: str) -> None:
        """Refuses ``model.inputs`` (as the study file gives them: name, shape, dtype) other than those the
        study's trials measured with: a request of another shape is another measurement. A dtype left out on
        either side, and a leading -1 (the batch dimension written out), compare as the same.

        Raises:
            ConfigError: the shape or type of an input both name was changed since.
        """
        had = (self.study_file.get("model") or {}).get("inputs")
        if self.study_file and had is not None and not _same_inputs(had, inputs):
            raise ConfigError(
                f"model.inputs: the trials of study {self.name!r} measured requests of {_inputs_text(had)}, and "
                f"this file gives {_inputs_text(inputs)}: {then}"
            )

    @property
    def has_variants(self) -> bool:
        """Whether precision and accelerator are knobs of the model: an ONNX model's (or a study that
        did not store its model's backend, from before it did)."""
        return self.model_backend in (None, "onnxruntime")

    @property
    def bounds(self) -> dict[str, dict[str, float | None]]:
        """The study's constraints as its study file gave them: ``{metric: {"min": .., "max": ..}}``."""
        return dict(self.study_file.get("constraints") or {})

    @property
    def maximize(self) -> bool:
        """Whether the first objective is maximized."""
        return bool(self.directions) and self.directions[0] == "maximize"

    @property
    def n_trials(self) -> int | None:
        """The study file's trial budget, if it set one."""
        n_trials = (self.study_file.get("search") or {}).get("n_trials")
        return n_trials if isinstance(n_trials, int) else None


def _limits(bounds: Bounds) -> dict[tuple[str, str], float]:
    return {(m, side): float(v) for m, b in bounds.items() for side, v in (b or {}).items() if v is not None}


def bounds_text(bounds: Bounds) -> str:
    """``latency_p99_ms <= 10, accuracy_drop <= 0.05``, or ``no constraints``."""
    signs = {"min": ">=", "max": "<="}
    parts = [f"{m} {signs[side]} {v:g}" for (m, side), v in sorted(_limits(bounds).items())]
    return ", ".join(parts) or "no constraints"


def _input_shapes(inputs: list[dict[str, Any]]) -> dict[str, tuple[tuple[int, ...], str | None]]:
    shapes = {}
    for tensor in inputs:
        shape = tuple(tensor.get("shape") or ())
        shapes[str(tensor.get("name"))] = (shape[1:] if shape[:1] == (-1,) else shape, tensor.get("dtype"))
    return shapes


def _same_inputs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether the inputs both name have the same shape (and type, where both give one). An input one side
    leaves out may have been the model's own shape, which only the model knows: it passes."""
    shapes_a, shapes_b = _input_shapes(a), _input_shapes(b)
    for name in shapes_a.keys() & shapes_b.keys():
        (shape, dtype), (other_shape, other_dtype) = shapes_a[name], shapes_b[name]
        if shape != other_shape or (dtype and other_dtype and dtype != other_dtype):
            return False
    return True


def _inputs_text(inputs: list[dict[str, Any]]) -> str:
    """``ids [16]``, or ``the model's own shapes``."""
    return (
        ", ".join(f"{n} {list(shape)}" for n, (shape, _) in _input_shapes(inputs).items()) or "the model's own shapes"
    )


def no_trial(name: str, number: int, count: int) -> str:
    """``study 'x' has no trial 10 (its trials are 0-9)``: Optuna numbers a study's trials from 0."""
    have = "it has no trials" if count == 0 else "its one trial is 0" if count == 1 else f"its trials are 0-{count - 1}"
    return f"study {name!r} has no trial {number} ({have})"


def read_info(study: optuna.Study) -> StudyInfo:
    attrs = study.user_attrs
    directions = tuple(d.name.lower() for d in study.directions)
    names = study.metric_names or [f"objective_{i}" for i in range(len(directions))]
    study_file = attrs.get(ATTR_STUDY_FILE)
    return StudyInfo(
        name=study.study_name,
        directions=directions,
        metric_names=tuple(names),
        study_file=study_file if isinstance(study_file, dict) else {},
        worker_cores=attrs.get(ATTR_WORKER_CORES),
        model_backend=attrs.get(ATTR_MODEL_BACKEND),
        workers=tuple(attrs.get(ATTR_WORKERS) or ()),
        verifications=tuple(v for v in attrs.get(ATTR_VERIFICATIONS) or () if isinstance(v, dict)),
        warm_start_from=tuple(str(name) for name in attrs.get(ATTR_WARM_START_FROM) or ()),
        model_digest=attrs.get(ATTR_MODEL_DIGEST),
    )


@dataclass(frozen=True)
class StoredStudy:
    """A study and every trial in it.

    Attributes:
        info: What the study stores about itself.
        trials: Every trial, by number.
    """

    info: StudyInfo
    trials: tuple[StoredTrial, ...]

    @property
    def name(self) -> str:
        return self.info.name

    def trial(self, number: int | None) -> StoredTrial | None:
        if number is None:
            return None
        if 0 <= number < len(self.trials) and self.trials[number].number == number:
            return self.trials[number]
        return next((t for t in self.trials if t.number == number), None)

    @property
    def default(self) -> StoredTrial | None:
        """The first COMPLETE trial of the model's default config."""
        return next((t for t in self.trials if t.complete and t.is_default), None)

    def counted(self) -> int:
        """Trials that count against the budget (see ``StoredTrial.counted``)."""
        return sum(1 for t in self.trials if t.counted)


def read_study(
    study: optuna.Study, store: Store | None = None, trials: Iterable[FrozenTrial] | None = None
) -> StoredStudy:
    """The study with every trial (or the ``trials`` given), and the tuner's rows where ``store`` is given."""
    frozen = list(study.get_trials(deepcopy=False) if trials is None else trials)
    return StoredStudy(read_info(study), tuple(read_trials(frozen, store)))
