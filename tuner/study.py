"""The ask -> worker -> tell loop of one study, stored in SQL.

    summary = run_study(cfg, store, on_event=print)

The first trial of a new study is the model's default config, so every result reads as a gain
over it. A config already measured in this study is not measured again: its result is reused
and the trial marked ``reused_from``. Trials left RUNNING by a tuner that was killed are marked
FAIL when the study is opened again, and their configs are proposed again.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config import StudyConfig
from tuner.errors import ConfigError, DiskFullError
from tuner.hardware import WorkerPlan, plan_workers
from tuner.landscape import ReplayPool, load_replay, replay_plan
from tuner.load_setup import engine_settings, real_samples, sweep_plan
from tuner.model_info import TensorInfo, read_model_info
from tuner.pool import Finished, LocalPool, Pool, RayPool, RaySettings, WorkerStatus
from tuner.results import (
    ATTR_ACCURACY,
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_METRICS,
    ATTR_REMEASURE_OF,
    ATTR_REUSED_FROM,
    ATTR_SERVER,
    ATTR_SPEC_KEY,
    ATTR_STUDY_FILE,
    ATTR_WORKER,
    ATTR_WORKER_CORES,
    ATTR_WORKERS,
    choose_point,
    constraint_values,
    default_trial,
    recommend,
    trial_metrics,
)
from tuner.samplers import initial_params, make_sampler
from tuner.search_space import SearchSpace
from tuner.store import Store, redact_url
from tuner.study_trials import carry_attrs, counted_trials, recover_interrupted, remeasure_plan
from tuner.trial import Failure, InstanceKind, TrialOutcome, TrialSpec
from tuner.validation import validation_inputs
from tuner.worker import WorkerSetup

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrialEvent:
    """A trial started or finished; for progress displays.

    Attributes:
        kind: ``started`` or ``finished``.
        number: The trial number.
        params: The trial's params.
        done: Trials finished in this study so far.
        total: Trials the study will have when done (None without a trial budget).
        trial: The finished trial (for ``finished``).
        best: The best feasible trial so far by the first objective, if any.
    """

    kind: str
    number: int
    params: dict[str, Any]
    done: int
    total: int | None
    trial: FrozenTrial | None = None
    best: FrozenTrial | None = None


@dataclass
class StudySummary:
    """What a study run leaves: the feasible Pareto front and the recommendation."""

    study: optuna.Study
    pareto: list[FrozenTrial] = field(default_factory=list)
    recommended: FrozenTrial | None = None
    default: FrozenTrial | None = None
    interrupted: bool = False
    stopped: str | None = None


def build_space(cfg: StudyConfig, plan: WorkerPlan) -> SearchSpace:
    kind = InstanceKind.GPU if plan.on_gpu else InstanceKind.CPU
    return SearchSpace(cfg.search.space, plan.cpus_per_worker, kind)


def check_study(cfg: StudyConfig) -> None:
    """Raises what opening the study would raise, before anything is written or started.

    Raises:
        ModelError: the model file cannot be served (unreadable, free dimensions, bad validation data).
        ConfigError: the search space does not suit the workers (e.g. TensorRT on CPU workers).
    """
    inputs = [TensorInfo(t.name, t.dtype, tuple(t.shape)) for t in cfg.model.inputs]
    info = read_model_info(cfg.model.path, inputs)
    space = build_space(cfg, worker_plan(cfg))
    make_sampler(cfg.search.sampler, cfg.search.seed, space, cfg.search.n_startup_trials)
    if cfg.model.validation_data is not None:
        validation_inputs(cfg.model.name, info, cfg.model.validation_data, cfg.model.validation_samples)
    real_samples(cfg, info)


def open_study(cfg: StudyConfig, store: Store, space: SearchSpace, plan: WorkerPlan) -> optuna.Study:
    """Creates the study, or opens it again to continue it.

    Raises:
        ConfigError: the stored study has other objectives.
    """
    directions = [o.direction for o in cfg.objectives]
    sampler = make_sampler(cfg.search.sampler, cfg.search.seed, space, cfg.search.n_startup_trials)
    existing = cfg.study in store.study_names()
    if existing:
        stored = store.load_study(cfg.study)
        if [d.name.lower() for d in stored.directions] != directions or stored.metric_names != [
            o.metric for o in cfg.objectives
        ]:
            raise ConfigError(
                f"objectives: study {cfg.study!r} already exists with objectives {stored.metric_names}; "
                "use another study name"
            )
    study = optuna.create_study(
        study_name=cfg.study, storage=store.optuna, directions=directions, sampler=sampler, load_if_exists=True
    )
    if not existing:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard labels with
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.metric for o in cfg.objectives])
    # The study file as it ran, its storage URL without a password (the dashboard shows it).
    study.set_user_attr(ATTR_STUDY_FILE, cfg.model_dump(mode="json") | {"storage": redact_url(cfg.storage)})
    study.set_user_attr(ATTR_WORKER_CORES, plan.cpus_per_worker)
    return study


class StudyRunner:
    """Runs a study's trials on one worker until the budget is spent.

    Args:
        cfg: The validated study file.
        store: The storage the study lives in.
        on_event: Called when a trial starts and when it finishes.
    """

    def __init__(
        self, cfg: StudyConfig, store: Store, on_event: Callable[[TrialEvent], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.on_event = on_event or (lambda event: None)
        self.plan = worker_plan(cfg)
        self.space = build_space(cfg, self.plan)
        inputs = [TensorInfo(t.name, t.dtype, tuple(t.shape)) for t in cfg.model.inputs]
        self.model_info = read_model_info(cfg.model.path, inputs)
        self.validation = validation_inputs(
            cfg.model.name, self.model_info, cfg.model.validation_data, cfg.model.validation_samples
        )
        self.load_samples = real_samples(cfg, self.model_info)
        self.study = open_study(cfg, store, self.space, self.plan)
        self._measured: dict[str, FrozenTrial] = {}
        self._pending: dict[int, optuna.Trial] = {}
        self._twins: dict[str, list[optuna.Trial]] = {}
        self._in_flight: dict[str, int] = {}
        self._remeasure_left: int | None = None
        self.pool: Pool | None = None

    def worker_setup(self, index: int = 0) -> WorkerSetup:
        load = self.cfg.load
        return WorkerSetup(
            model_name=self.cfg.model.name,
            model_path=self.cfg.model.path,
            model_info=self.model_info,
            workdir=self.cfg.work_dir / self.cfg.study / f"worker-{index}",
            sweep=sweep_plan(self.cfg),
            engine=engine_settings(self.cfg, self.model_info),
            warmup_requests=load.warmup_requests,
            load_samples=self.load_samples,
            contamination_cpu_pct=load.contamination_cpu_pct,
            contamination_retries=load.contamination_retries,
            gpu=self.plan.on_gpu,
            validation=self.validation,
            server=self.cfg.server,
            index=index,
        )

    def run(self, n_trials: int | None = None, timeout_s: float | None = None) -> StudySummary:
        """Runs trials until the study has ``n_trials`` (or the time is up), then summarizes.

        Ctrl-C (or SIGTERM, which the CLI turns into the same KeyboardInterrupt) fails the trials
        in flight, queues their configs again and returns the summary.

        Raises:
            DiskFullError: a worker's disk is full; the trials in flight are stored to run again.
        """
        n_trials = n_trials if n_trials is not None else self.cfg.search.n_trials
        timeout_s = timeout_s if timeout_s is not None else self.cfg.search.timeout_s
        recover_interrupted(self.study)
        if not self.study.trials:
            first = initial_params(self.cfg.search.sampler, self.space, self.cfg.search.warm_start)
            # no more than the budget: a config left WAITING would be asked in a later phase or run
            first = first[: max(1, n_trials)] if n_trials is not None else first
            self.study.enqueue_trial(first[0], user_attrs={ATTR_DEFAULT: True})
            for params in first[1:]:
                self.study.enqueue_trial(params)
        self._measured = {
            t.user_attrs[ATTR_SPEC_KEY]: t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if ATTR_SPEC_KEY in t.user_attrs
        }
        deadline = time.monotonic() + timeout_s if timeout_s else None
        self._pending, self._twins, self._in_flight = {}, {}, {}
        interrupted = False
        with self.open_pool() as pool:
            self.pool = pool
            self.study.set_user_attr(ATTR_WORKERS, [_worker_json(w) for w in pool.status])
            try:
                self._loop(pool, n_trials, deadline)
                if not self._stopped_early(n_trials, deadline):
                    self._remeasure(pool)
            except KeyboardInterrupt:
                self._interrupt(self._in_flight_trials(), "interrupted (Ctrl-C or SIGTERM)")
                interrupted = True
            except DiskFullError:
                self._interrupt(self._in_flight_trials(), "interrupted: a worker's disk is full")
                raise
        return self.summary(interrupted)

    def open_pool(self) -> Pool:
        """The pool the study file asks for (tests hand in their own)."""
        return make_pool(self.cfg, self.plan, self.worker_setup)

    def _in_flight_trials(self) -> list[optuna.Trial]:
        waiting = [t for twins in self._twins.values() for t in twins]
        return [*self._pending.values(), *waiting]

    def _loop(self, pool: Pool, n_trials: int | None, deadline: float | None) -> None:
        """Asks as many trials as there are idle workers, tells each as it comes back."""
        while True:
            while pool.idle() > 0 and self._may_ask(n_trials, deadline):
                self._start_trial(pool, n_trials)
            if not self._pending:
                return
            for finished in pool.collect(timeout_s=1.0):
                trial = self._pending.pop(finished.ticket)
                self._in_flight.pop(finished.spec.key(), None)
                trial.set_user_attr(ATTR_WORKER, finished.worker)
                if finished.outcome.failure_kind == Failure.DISK_FULL:
                    self._stop_for_full_disk(trial, finished)
                self._tell(trial, finished.outcome)
                self._finish(trial, n_trials)
                self._release_twins(pool, finished.spec.key(), n_trials)

    def _stopped_early(self, n_trials: int | None, deadline: float | None) -> bool:
        """True where the time ran out before the trial budget was spent."""
        return deadline is not None and time.monotonic() >= deadline and (
            n_trials is None or counted_trials(self.study) < n_trials
        )

    def _remeasure(self, pool: Pool) -> None:
        """Measures the best configs again with fresh loads, so that the recommendation rests
        on the median of several loads rather than on one lucky one."""
        settings = self.cfg.load.remeasure
        if self.cfg.search.replay is not None or settings.top == 0:
            return
        plan = remeasure_plan(self.study, settings.top, settings.repeats)
        if not plan:
            return
        logger.info("measuring the best %d configs again (%d loads)", len({t.number for t in plan}), len(plan))
        for source in plan:
            self.study.enqueue_trial(source.params, user_attrs={ATTR_REMEASURE_OF: source.number},
                                     skip_if_exists=False)
        self._remeasure_left = len(plan)
        try:
            self._loop(pool, None, None)
        finally:
            self._remeasure_left = None

    def _release_twins(self, pool: Pool, key: str, n_trials: int | None) -> None:
        """Answers the trials that waited for this config: from its result, or by measuring one."""
        twins = self._twins.pop(key, [])
        source = self._measured.get(key)
        while twins:
            twin = twins.pop(0)
            if source is not None:
                self._reuse(twin, source)
                self._finish(twin, n_trials)
            else:  # the config failed: measure it once more, the rest wait for that
                self._submit(pool, twin, self.space.to_spec(twin.params))
                self._twins[key] = twins
                return

    def _waiting(self) -> int:
        return sum(len(twins) for twins in self._twins.values())

    def _may_ask(self, n_trials: int | None, deadline: float | None) -> bool:
        if self._remeasure_left is not None:
            return self._remeasure_left > 0
        in_flight = len(self._pending) + self._waiting()
        if n_trials is not None and counted_trials(self.study) + in_flight >= n_trials:
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return not _sampler_exhausted(self.study)

    def _start_trial(self, pool: Pool, n_trials: int | None) -> None:
        trial = self.study.ask()
        spec = self.space.suggest(trial)
        trial.set_user_attr(ATTR_SPEC_KEY, spec.key())
        done = counted_trials(self.study)
        self.on_event(TrialEvent("started", trial.number, dict(trial.params), done, n_trials))
        source = self._measured.get(spec.key())
        if ATTR_REMEASURE_OF in trial.user_attrs:
            if self._remeasure_left:
                self._remeasure_left -= 1
            self._submit(pool, trial, spec)  # a fresh load of the same config, on purpose
        elif source is not None:
            self._reuse(trial, source)
            self._finish(trial, n_trials)
        elif spec.key() in self._in_flight:
            self._twins.setdefault(spec.key(), []).append(trial)  # measured right now: wait for it
        else:
            self._submit(pool, trial, spec)

    def _submit(self, pool: Pool, trial: optuna.Trial, spec: TrialSpec) -> None:
        self._pending[trial.number] = trial
        self._in_flight[spec.key()] = trial.number
        pool.submit(trial.number, spec)

    def _finish(self, trial: optuna.Trial, n_trials: int | None) -> None:
        frozen = self.study.trials[trial.number]
        if frozen.state == TrialState.COMPLETE:
            self._measured.setdefault(frozen.user_attrs[ATTR_SPEC_KEY], frozen)
        event = TrialEvent(
            "finished", trial.number, dict(trial.params), counted_trials(self.study), n_trials,
            trial=frozen, best=recommend(self.study),
        )
        self.on_event(event)

    def summary(self, interrupted: bool = False) -> StudySummary:
        return StudySummary(
            study=self.study,
            pareto=self.study.best_trials,
            recommended=recommend(self.study),
            stopped=_stop_reason(self.study),
            default=default_trial(self.study),
            interrupted=interrupted,
        )

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, outcome)  # noqa: SLF001
        trial.set_user_attr("timings_s", outcome.timings_s)
        if outcome.failed:
            trial.set_user_attr(ATTR_FAIL_REASON, outcome.error or "no measurement")
            self.study.tell(trial, state=TrialState.FAIL)
            logger.info("trial %d failed: %s", trial.number, outcome.error)
            return
        point = choose_point(outcome.points, self.cfg, outcome.accuracy)
        metrics = trial_metrics(point, outcome.accuracy)
        trial.set_user_attr(ATTR_METRICS, point.as_dict() | {"accuracy_drop": metrics["accuracy_drop"]})
        if outcome.accuracy is not None:
            trial.set_user_attr(ATTR_ACCURACY, outcome.accuracy)
        if outcome.server:
            trial.set_user_attr(ATTR_SERVER, outcome.server)
        for name, value in constraint_values(metrics, self.cfg).items():
            trial.set_constraint(name, value)
        self.study.tell(trial, [metrics[o.metric] for o in self.cfg.objectives])

    def _reuse(self, trial: optuna.Trial, source: FrozenTrial) -> None:
        record = self.store.records([source._trial_id]).get(source._trial_id)  # noqa: SLF001
        if record is not None:
            outcome = TrialOutcome(
                spec=self.space.to_spec(trial.params),
                config_pbtxt=record.config_pbtxt,
                points=record.points,
                timings_s={},
            )
            self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, outcome)  # noqa: SLF001
        trial.set_user_attr(ATTR_REUSED_FROM, source.number)
        trial.set_user_attr(ATTR_METRICS, source.user_attrs.get(ATTR_METRICS, {}))
        for attr in (ATTR_ACCURACY, ATTR_SERVER):
            if attr in source.user_attrs:
                trial.set_user_attr(attr, source.user_attrs[attr])
        for name, value in source.constraints.items():
            trial.set_constraint(name, value)
        self.study.tell(trial, list(source.values))

    def _stop_for_full_disk(self, trial: optuna.Trial, finished: Finished) -> None:
        """A full disk is no config's fault: the trial runs again in a later run, and the study stops.

        Raises:
            DiskFullError: always.
        """
        self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, finished.outcome)  # noqa: SLF001
        self._interrupt([trial], f"interrupted: {finished.outcome.error}")
        raise DiskFullError(
            f"worker {finished.worker}: {finished.outcome.error}; trial {trial.number} is stored to run again. "
            "Free some space and run the same command to continue the study"
        )

    def _interrupt(self, trials: list[optuna.Trial], reason: str) -> None:
        """Fails the trials in flight and queues their configs for the next run."""
        for trial in trials:
            trial.set_user_attr(ATTR_FAIL_REASON, reason)
            trial.set_user_attr(ATTR_INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
            frozen = self.study.trials[trial.number]
            self.study.enqueue_trial(frozen.params, user_attrs=carry_attrs(frozen), skip_if_exists=False)


def _worker_json(status: WorkerStatus) -> dict[str, Any]:
    return {"index": status.index, "node": status.node, "cores": list(status.cores)}


def make_pool(cfg: StudyConfig, plan: WorkerPlan, setup_for: Callable[[int], WorkerSetup]) -> Pool:
    """The pool the study file asks for: Ray actors, or one worker in this process."""
    landscape = load_replay(cfg)
    if landscape is not None:
        return ReplayPool(landscape, workers=plan.count)
    if cfg.workers.backend == "local":
        return LocalPool(setup_for(0))
    settings = RaySettings(
        count=plan.count,
        cpus_per_worker=plan.cpus_per_worker,
        gpus_per_worker=plan.gpus_per_worker,
        address=cfg.workers.ray_address,
        trial_timeout_s=cfg.load.trial_timeout_s,
        start_timeout_s=cfg.server.startup_timeout_s + 60,
    )
    return RayPool(setup_for, cfg.model.path, settings)


def worker_plan(cfg: StudyConfig) -> WorkerPlan:
    """The workers of the study: the recording's cores per worker in a replay, else this machine's."""
    landscape = load_replay(cfg)
    if landscape is not None:
        return replay_plan(landscape, cfg.workers.count)
    return plan_workers(cfg.workers)


def _sampler_exhausted(study: optuna.Study) -> bool:
    """True when the sampler (bo, grid, quick) has nothing left to propose."""
    is_exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(is_exhausted and is_exhausted(study))


def _stop_reason(study: optuna.Study) -> str | None:
    """Why the sampler ended the study early, for the summary; None where it did not."""
    if not _sampler_exhausted(study):
        return None
    name = type(study.sampler).__name__
    return getattr(study.sampler, "exhausted_reason", f"{name} has nothing left to propose")
