"""The ask -> worker -> tell loop of one study, stored in SQL.

    summary = StudyRunner(cfg, store, plan=plan_study(cfg), on_event=print).run()

The first trial of a new study is the model's default config, so every result reads as a gain
over it; the warm start follows, a config at a time (tuner.study._initial). A config already
measured in this study is not measured again: its result is reused and the trial marked
``reused_from``. Trials left RUNNING by a tuner that was killed are marked FAIL when the study is
opened again, and their configs are proposed again.

Each trial of the search but the default config goes to its worker with a screen
(``load.early_stop``, tuner.study._screen): a config the screen shows hopeless comes back with
the screen's point only, and is told PRUNED with the reason, its constraints from that point and,
for one objective, its value there as an intermediate value (what Optuna's samplers learn from a
PRUNED trial). A pruned config is not measured again: a later trial of it is told PRUNED alike.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.trial import FrozenTrial, TrialState

from tuner import interrupts
from tuner.config import StudyConfig
from tuner.errors import ConfigError, DiskFullError, LeaseLostError
from tuner.pool import Finished, Pool, WorkerStatus
from tuner.replay import ReplayPool
from tuner.samplers import make_sampler
from tuner.storage import (
    ATTR_ACCURACY,
    ATTR_DEFAULT,
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_METRICS,
    ATTR_MODEL_BACKEND,
    ATTR_MODEL_DIGEST,
    ATTR_NO_VARIANT,
    ATTR_REMEASURE_OF,
    ATTR_REUSED_FROM,
    ATTR_SERVER,
    ATTR_SERVER_RESTARTED,
    ATTR_SPEC_KEY,
    ATTR_STUDY_FILE,
    ATTR_TIMINGS,
    ATTR_WARM_START_FROM,
    ATTR_WORKER,
    ATTR_WORKER_CORES,
    ATTR_WORKERS,
    Store,
    StoredStudy,
    StudyLease,
    read_info,
    read_study,
    redact_url,
)
from tuner.study._initial import queue_initial
from tuner.study._plan import StudyPlan, plan_study
from tuner.study._pruned import tell_pruned, tell_pruned_again
from tuner.study._remeasure import Confirming, contenders, remeasure_budget
from tuner.study._results import choose_point, constraint_values, trial_metrics
from tuner.study._screen import best_feasible, incumbent_of, screen_concurrency, screen_for, throughput_at
from tuner.study._trials import carry_attrs, counted_trials, recover_interrupted
from tuner.study._verdict import ConfigResult, Recommendation, config_results, default_result, pareto_front, recommend
from tuner.trial import Failure, Screen, TrialOutcome, TrialSpec
from tuner.workers import LocalPool, RayPool, RaySettings, WorkerSetup, engine_settings, sweep_plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialEvent:
    """A trial started or finished; for progress displays.

    Attributes:
        kind: ``started`` or ``finished``.
        number: The trial number.
        params: The trial's params.
        done: What the phase has finished: trials that count against the budget while searching,
            fresh loads while confirming.
        total: What the phase will have finished when done: the trial budget (None without one)
            while searching, the loads planned while confirming.
        trial: The finished trial (for ``finished``).
        best: The recommendation so far (tuner.study._verdict.recommend), if any config is feasible.
        phase: Where the study is, in words: ``searching`` while the sampler proposes configs (``done`` of
            ``total`` trials), ``confirming on fresh loads`` while loading contenders afresh (``done`` of
            ``total`` loads; tuner.study._remeasure).
    """

    kind: str
    number: int
    params: dict[str, Any]
    done: int
    total: int | None
    trial: FrozenTrial | None = None
    best: Recommendation | None = None
    phase: str = ""


#: The phase while the sampler proposes configs; the progress bar's count says how many of the budget finished.
#: It names no trial: the trials' own numbers (Optuna's, from 0, as `tuner show --trial N` takes them) are the
#: worker lines' and the finished trials'.
SEARCHING = "searching"


@dataclass
class RunSummary:
    """What a study run leaves, read back from the storage (see tuner.storage, tuner.study._verdict).

    Attributes:
        study: The Optuna study.
        stored: Every trial, typed.
        results: Every measured config with its loads.
        pareto: The feasible Pareto front of configs, by their medians.
        recommendation: The config to deploy, if any is feasible.
        default: The model's default config, where measured.
        interrupted: Ctrl-C or SIGTERM stopped the run.
        stopped: Why the sampler ended the study early, where it did.
        nothing_left: The run found the study done (its trial budget spent, no load left to confirm) and
            measured nothing.
    """

    study: optuna.Study
    stored: StoredStudy
    results: list[ConfigResult] = field(default_factory=list)
    pareto: list[ConfigResult] = field(default_factory=list)
    recommendation: Recommendation | None = None
    default: ConfigResult | None = None
    interrupted: bool = False
    stopped: str | None = None
    nothing_left: bool = False


def open_study(cfg: StudyConfig, store: Store, plan: StudyPlan) -> optuna.Study:
    """Creates the study, or opens it again to continue it.

    Raises:
        ConfigError: the stored study has other objectives, asked a knob for other choices than the
            space asks it for (Optuna keeps a parameter's choices for the whole study), judged its
            trials against other constraints, measured requests of another shape or type of an input
            ``model.inputs`` names, or measured a model whose files have changed since.
    """
    directions = [o.direction for o in cfg.objectives]
    sampler = make_sampler(cfg.search.sampler, cfg.search.seed, plan.space, cfg.search.n_startup_trials)
    existing = cfg.study in store.study_names()
    digest = plan.model_digest
    if existing:
        stored = store.load_study(cfg.study)
        if [d.name.lower() for d in stored.directions] != directions or stored.metric_names != [
            o.metric for o in cfg.objectives
        ]:
            raise ConfigError(
                f"objectives: study {cfg.study!r} already exists with objectives {stored.metric_names}; "
                "use another study name"
            )
        _check_same_choices(stored, plan.space.distributions, cfg.study)
        info = read_info(stored)
        another = (
            f"use another study name (search.warm_start: {{from: [{cfg.study}]}} starts a new study from this one)"
        )
        info.check_bounds({m: b.model_dump(mode="json") for m, b in cfg.constraints.items()}, another)
        info.check_inputs([t.model_dump(mode="json") for t in cfg.model.inputs], another)
        if digest is not None:
            info.check_model(digest, f"its trials do not hold for these files; {another}")
    study = optuna.create_study(
        study_name=cfg.study, storage=store.optuna, directions=directions, sampler=sampler, load_if_exists=True
    )
    if not existing:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what the dashboard labels with
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.metric for o in cfg.objectives])
    # The study file as it ran, its storage URL without a password (the dashboard shows it).
    study.set_user_attr(ATTR_STUDY_FILE, cfg.model_dump(mode="json") | {"storage": redact_url(cfg.storage)})
    study.set_user_attr(ATTR_WORKER_CORES, plan.workers.cpus_per_worker)
    repository = plan.repository_model
    study.set_user_attr(ATTR_MODEL_BACKEND, repository.backend if repository is not None else "onnxruntime")
    if digest is not None:
        study.set_user_attr(ATTR_MODEL_DIGEST, digest)
    return study


def _check_same_choices(stored: optuna.Study, wanted: Mapping[str, BaseDistribution], name: str) -> None:
    """Refuses a space whose knob takes other choices than the stored study's trials were asked for.

    Raises:
        ConfigError: naming the knob and both sets of choices.
    """
    for trial in stored.get_trials(deepcopy=False):
        for knob, had in trial.distributions.items():
            now = wanted.get(knob)
            if now is None:
                continue
            try:
                check_distribution_compatibility(had, now)
            except ValueError:
                raise ConfigError(
                    f"search.space.{knob}: study {name!r} already exists with {knob} {_choices(had)}, "
                    f"and this file asks {_choices(now)}; use another study name "
                    "(search.warm_start: {from: [...]} starts a new study from this one)"
                ) from None


def _choices(distribution: BaseDistribution) -> str:
    """[1, 4, 8], or a range as 0-20000 in steps of 100."""
    if isinstance(distribution, CategoricalDistribution):
        return str(list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return f"{distribution.low}-{distribution.high} in steps of {distribution.step}"
    return repr(distribution)


class StudyRunner:
    """Runs a study's trials on one worker until the budget is spent.

    Args:
        cfg: The validated study file.
        store: The storage the study lives in.
        on_event: Called when a trial starts and when it finishes.
        plan: The study's plan where the caller has built it (the CLI, in its pre-flight
            check); None builds it here.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        store: Store,
        on_event: Callable[[TrialEvent], None] | None = None,
        plan: StudyPlan | None = None,
        lease: StudyLease | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.lease = lease
        self.on_event = on_event or (lambda event: None)
        self.plan = plan or plan_study(cfg, store)
        self.space = self.plan.space  # asked at every trial
        self.study = open_study(cfg, store, self.plan)
        self._measured: dict[str, FrozenTrial] = {}
        self._pruned: dict[str, FrozenTrial] = {}
        self._incumbent: float | None = None
        self._pending: dict[int, optuna.Trial] = {}
        self._twins: dict[str, list[optuna.Trial]] = {}
        self._in_flight: dict[str, int] = {}
        self._confirming: Confirming | None = None
        self._phase = ""
        self.pool: Pool | None = None

    def worker_setup(self, index: int = 0) -> WorkerSetup:
        load = self.cfg.load
        return WorkerSetup(
            model_name=self.cfg.model.name,
            model_path=self.plan.model_file,
            model_info=self.plan.model_info,
            workdir=self.cfg.work_dir / self.cfg.study / f"worker-{index}",
            sweep=sweep_plan(self.cfg),
            engine=engine_settings(self.cfg, self.plan.model_info),
            warmup_requests=load.warmup_requests,
            load_samples=self.plan.load_samples,
            contamination_cpu_pct=load.contamination_cpu_pct,
            contamination_retries=load.contamination_retries,
            gpu=self.plan.workers.on_gpu,
            validation=self.plan.validation,
            accuracy_metric=self.cfg.model.accuracy_metric,
            server=self.cfg.server,
            index=index,
            repository_model=self.plan.repository_model,
        )

    def run(self, n_trials: int | None = None, timeout_s: float | None = None) -> RunSummary:
        """Runs trials until the study has ``n_trials`` (or the time is up), then summarizes.

        Ctrl-C (or SIGTERM, which the CLI turns into the same KeyboardInterrupt) fails the trials
        in flight, queues their configs again and returns the summary.

        Raises:
            DiskFullError: a worker's disk is full; the trials in flight are stored to run again.
            LeaseLostError: another tuner took the study over, or deleted it.
        """
        n_trials = n_trials if n_trials is not None else self.cfg.search.n_trials
        timeout_s = timeout_s if timeout_s is not None else self.cfg.search.timeout_s
        recover_interrupted(self.study)
        if not self.study.trials and self.plan.seeds is not None:
            self.study.set_user_attr(ATTR_WARM_START_FROM, list(self.plan.seeds.studies))
        self._measured, self._pruned = self._by_config(TrialState.COMPLETE), self._by_config(TrialState.PRUNED)
        self._incumbent = incumbent_of(read_study(self.study, self.store).trials, screen_concurrency(self.cfg))
        deadline = time.monotonic() + timeout_s if timeout_s else None
        self._pending, self._twins, self._in_flight = {}, {}, {}
        if self._nothing_left(n_trials):  # run again once done: its summary, without starting a worker
            return replace(self.summary(), nothing_left=True)
        try:
            interrupted = self._measure(n_trials, deadline)
        except KeyboardInterrupt:  # while the workers started or stopped: no trial was in flight
            interrupts.clear()
            interrupted = True
        return self.summary(interrupted)

    def _measure(self, n_trials: int | None, deadline: float | None) -> bool:
        """Runs the search, then the re-measuring, on the study's pool; True where Ctrl-C or SIGTERM stopped it."""
        with self.open_pool() as pool:
            self.pool = pool
            self.study.set_user_attr(ATTR_WORKERS, [_worker_json(w) for w in pool.status])
            try:
                self._loop(pool, lambda pool: self._ask_search(pool, n_trials, deadline), n_trials)
                if not self._stopped_early(n_trials, deadline):
                    self._remeasure(pool, n_trials)
            except KeyboardInterrupt:
                interrupts.clear()
                self._interrupt(self._in_flight_trials(), "interrupted (Ctrl-C or SIGTERM)")
                return True
            except DiskFullError:
                self._interrupt(self._in_flight_trials(), "interrupted: a worker's disk is full")
                raise
            except KeyError:  # Optuna's storage: "Record does not exist"
                if self.cfg.study in self.store.study_names():
                    raise
                raise LeaseLostError(
                    f"study {self.cfg.study!r} was deleted while this run drove it; this run stopped"
                ) from None
        return False

    def open_pool(self) -> Pool:
        """The pool the study file asks for (tests hand in their own)."""
        return make_pool(self.cfg, self.plan, self.worker_setup)

    def _in_flight_trials(self) -> list[optuna.Trial]:
        waiting = [t for twins in self._twins.values() for t in twins]
        return [*self._pending.values(), *waiting]

    def _loop(self, pool: Pool, start_next: Callable[[Pool], bool], n_trials: int | None) -> None:
        """Starts trials while a worker is idle and ``start_next`` starts one, tells each as it comes back."""
        while True:
            interrupts.raise_if_requested()  # a Ctrl-C or SIGTERM whose KeyboardInterrupt was lost
            while pool.idle() > 0 and start_next(pool):
                pass
            if not self._pending:
                return
            collected = pool.collect(timeout_s=1.0)
            self._check_lease()  # before a result is stored or another trial started
            for finished in collected:
                trial = self._pending.pop(finished.ticket)
                self._in_flight.pop(finished.spec.key(), None)
                trial.set_user_attr(ATTR_WORKER, finished.worker)
                if finished.outcome.failure_kind == Failure.DISK_FULL:
                    self._stop_for_full_disk(trial, finished)
                self._tell(trial, finished.outcome)
                self._finish(trial, n_trials)
                self._release_twins(pool, finished.spec.key(), n_trials)

    def _check_lease(self) -> None:
        """Raises LeaseLostError where another driver took this run's study over."""
        if self.lease is not None and self.lease.lost:
            raise LeaseLostError(
                f"study {self.cfg.study!r}: another tuner took over its lease; this run stopped without "
                f"writing more ({len(self._pending)} trial(s) in flight are the other tuner's to run again)"
            )

    def _nothing_left(self, n_trials: int | None) -> bool:
        """Whether the study has spent its trial budget, has no trial waiting to run, and has no
        contender left to load afresh (what ``_remeasure`` would find)."""
        if n_trials is None or counted_trials(self.study) < n_trials:
            return False
        stored = read_study(self.study)
        if any(t.state == TrialState.WAITING for t in stored.trials):
            return False
        settings = self.cfg.load.remeasure
        if self.cfg.search.replay is not None or remeasure_budget(settings, n_trials, stored) == 0:
            return True
        return not contenders(stored, settings.max_loads_per_config)

    def _stopped_early(self, n_trials: int | None, deadline: float | None) -> bool:
        """True where the time ran out before the trial budget was spent (with only a timeout,
        the time running out is how the search ends)."""
        return (
            deadline is not None
            and n_trials is not None
            and time.monotonic() >= deadline
            and counted_trials(self.study) < n_trials
        )

    def _by_config(self, state: TrialState) -> dict[str, FrozenTrial]:
        """The study's trials in ``state``, by their config's key."""
        trials = self.study.get_trials(deepcopy=False, states=(state,))
        return {t.user_attrs[ATTR_SPEC_KEY]: t for t in trials if ATTR_SPEC_KEY in t.user_attrs}

    def _ask_search(self, pool: Pool, n_trials: int | None, deadline: float | None) -> bool:
        if not self._may_ask(n_trials, deadline):
            return False
        seeds = self.plan.seeds.params if self.plan.seeds is not None else None
        queue_initial(self.study, self.space, self.cfg.search.sampler, self.cfg.search.warm_start is not False, seeds)
        self._start_trial(pool, n_trials)
        return True

    def _remeasure(self, pool: Pool, n_trials: int | None) -> None:
        """Loads the contenders for the recommendation afresh (see tuner.study._remeasure), so that it
        rests on the median of several loads rather than on one lucky one."""
        settings = self.cfg.load.remeasure
        if self.cfg.search.replay is not None:  # a replay answers every load of a config alike
            return
        budget = remeasure_budget(settings, n_trials, read_study(self.study))
        if budget == 0:
            return
        confirming = self._confirming = Confirming(budget, settings.max_loads_per_config)
        logger.info("confirming the contenders for the recommendation: up to %d fresh loads", budget)
        try:
            self._loop(pool, lambda pool: self._ask_remeasure(pool, confirming), None)
        finally:
            self._confirming = None

    def _ask_remeasure(self, pool: Pool, confirming: Confirming) -> bool:
        """Starts a fresh load of the contender that needs one most, while the budget allows."""
        if confirming.started >= confirming.budget:
            return False
        stored = read_study(self.study)
        # Optuna asks the oldest waiting trial first: one queued by an interrupted run goes before a new one.
        if not any(t.state == TrialState.WAITING for t in stored.trials):
            found = contenders(stored, confirming.max_loads, busy=self._in_flight.keys())
            if not found:
                return False
            self.study.enqueue_trial(
                found[0].source.params, user_attrs={ATTR_REMEASURE_OF: found[0].source.number}, skip_if_exists=False
            )
        confirming.started += 1
        confirming.replan(stored)
        self._start_trial(pool, None)
        return True

    def _release_twins(self, pool: Pool, key: str, n_trials: int | None) -> None:
        """Answers the trials that waited for this config: from its result, or by measuring one."""
        twins = self._twins.pop(key, [])
        source = self._measured.get(key)
        while twins:
            twin = twins.pop(0)
            if source is not None:
                self._reuse(twin, source)
                self._finish(twin, n_trials)
            elif key in self._pruned:
                tell_pruned_again(self.study, self.store, twin, self.space.to_spec(twin.params), self._pruned[key])
                self._finish(twin, n_trials)
            else:  # the config failed: measure it once more, the rest wait for that
                self._submit(pool, twin, self.space.to_spec(twin.params))
                self._twins[key] = twins
                return

    def _waiting(self) -> int:
        return sum(len(twins) for twins in self._twins.values())

    def _may_ask(self, n_trials: int | None, deadline: float | None) -> bool:
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
        self._phase = SEARCHING if self._confirming is None else self._confirming.phase
        done, total = self._progress(n_trials)
        self.on_event(TrialEvent("started", trial.number, dict(trial.params), done, total, phase=self._phase))
        source = self._measured.get(spec.key())
        if ATTR_REMEASURE_OF in trial.user_attrs:
            self._submit(pool, trial, spec)  # a fresh load of the same config, on purpose
        elif source is not None:
            self._reuse(trial, source)
            self._finish(trial, n_trials)
        elif spec.key() in self._pruned:
            tell_pruned_again(self.study, self.store, trial, spec, self._pruned[spec.key()])
            self._finish(trial, n_trials)
        elif spec.key() in self._in_flight:
            self._twins.setdefault(spec.key(), []).append(trial)  # measured right now: wait for it
        else:
            self._submit(pool, trial, spec)

    def _submit(self, pool: Pool, trial: optuna.Trial, spec: TrialSpec) -> None:
        self._pending[trial.number] = trial
        self._in_flight[spec.key()] = trial.number
        pool.submit(trial.number, spec, self._screen(trial))

    def _screen(self, trial: optuna.Trial) -> Screen | None:
        """The trial's screen: none for the default config (the baseline is measured in full) or a fresh
        load of a contender."""
        attrs = trial.user_attrs
        if attrs.get(ATTR_DEFAULT) or ATTR_REMEASURE_OF in attrs:
            return None
        return screen_for(self.cfg, self._incumbent)

    def _finish(self, trial: optuna.Trial, n_trials: int | None) -> None:
        frozen = self.study.trials[trial.number]
        if frozen.state == TrialState.COMPLETE:
            self._measured.setdefault(frozen.user_attrs[ATTR_SPEC_KEY], frozen)
        elif frozen.state == TrialState.PRUNED:
            self._pruned.setdefault(frozen.user_attrs[ATTR_SPEC_KEY], frozen)
        stored = read_study(self.study)  # without the tuner's rows: values and attributes suffice
        if self._confirming is not None and ATTR_REMEASURE_OF in frozen.user_attrs:
            self._confirming.finished += 1
            self._confirming.replan(stored)
            self._phase = self._confirming.phase
        done, total = self._progress(n_trials)
        event = TrialEvent(
            "finished",
            trial.number,
            dict(trial.params),
            done,
            total,
            trial=frozen,
            best=recommend(config_results(stored.trials, stored.info), stored.info),
            phase=self._phase,
        )
        self.on_event(event)

    def _progress(self, n_trials: int | None) -> tuple[int, int | None]:
        """What the phase has finished, and what it will have finished when done (see TrialEvent)."""
        if self._confirming is not None:
            return self._confirming.finished, self._confirming.planned
        return counted_trials(self.study), n_trials

    def summary(self, interrupted: bool = False) -> RunSummary:
        stored = read_study(self.study, self.store)
        results = config_results(stored.trials, stored.info)
        return RunSummary(
            study=self.study,
            stored=stored,
            results=results,
            pareto=pareto_front(results, stored.info.directions),
            recommendation=recommend(results, stored.info),
            default=default_result(results),
            stopped=_stop_reason(self.study),
            interrupted=interrupted,
        )

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, outcome)
        trial.set_user_attr(ATTR_TIMINGS, outcome.timings_s)
        if outcome.restarted is not None:  # the worker's own warning stays in a Ray worker's log
            logger.warning("trial %d: %s; its config was measured again on a restarted server", trial.number,
                           outcome.restarted)  # fmt: skip
            trial.set_user_attr(ATTR_SERVER_RESTARTED, outcome.restarted)
        if outcome.failed:
            trial.set_user_attr(ATTR_FAIL_REASON, outcome.error or "no measurement")
            if outcome.failure_kind == Failure.VARIANT:  # the samplers propose no other config of the precision
                trial.set_user_attr(ATTR_NO_VARIANT, outcome.spec.precision)
            self.study.tell(trial, state=TrialState.FAIL)
            logger.info("trial %d failed: %s", trial.number, outcome.error)
            return
        if outcome.pruned is not None:
            tell_pruned(self.study, trial, outcome, self.cfg)
            return
        point = choose_point(outcome.points, self.cfg, outcome.accuracy)
        metrics = trial_metrics(point, outcome.accuracy)
        trial.set_user_attr(ATTR_METRICS, point.as_dict() | {"accuracy_drop": metrics["accuracy_drop"]})
        if outcome.accuracy is not None:
            trial.set_user_attr(ATTR_ACCURACY, outcome.accuracy)
        if outcome.server:
            trial.set_user_attr(ATTR_SERVER, outcome.server)
        constraints = constraint_values(metrics, self.cfg)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        self.study.tell(trial, [metrics[o.metric] for o in self.cfg.objectives])
        if all(v <= 0.0 for v in constraints.values()):
            self._incumbent = best_feasible(
                self._incumbent, throughput_at(outcome.points, screen_concurrency(self.cfg))
            )

    def _reuse(self, trial: optuna.Trial, source: FrozenTrial) -> None:
        record = self.store.records([source._trial_id]).get(source._trial_id)
        if record is not None:
            outcome = TrialOutcome(
                spec=self.space.to_spec(trial.params),
                config_pbtxt=record.config_pbtxt,
                points=record.points,
                timings_s={},
                step_configs=record.step_configs,
            )
            self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, outcome)
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
        self.store.save_outcome(self.cfg.study, trial._trial_id, trial.number, finished.outcome)
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


def make_pool(cfg: StudyConfig, plan: StudyPlan, setup_for: Callable[[int], WorkerSetup]) -> Pool:
    """The pool the study file asks for: the replay of a landscape, Ray actors, or one worker in this process."""
    if plan.landscape is not None:
        return ReplayPool(plan.landscape, workers=plan.workers.count)
    if cfg.workers.backend == "local":
        return LocalPool(setup_for(0))
    workers = plan.workers
    settings = RaySettings(
        count=workers.count,
        cpus_per_worker=workers.cpus_per_worker,
        gpus_per_worker=workers.gpus_per_worker,
        address=cfg.workers.ray_address,
        trial_timeout_s=cfg.load.trial_timeout_s,
        start_timeout_s=cfg.server.startup_timeout_s + 60,
    )
    model = plan.repository_model.folder if plan.repository_model is not None else plan.model_file
    assert model is not None  # a study has an ONNX file or a repository model
    return RayPool(setup_for, model, settings)


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
