"""Response models of every route: they are the API's OpenAPI schema."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tuner.trial import LoadPoint

# Optuna stores naive local times; RFC 3339 (OpenAPI's date-time) needs the offset.
Timestamp = Annotated[datetime, AfterValidator(lambda value: value if value.tzinfo else value.astimezone())]

# A param is whatever Optuna stored: a number, a bool or a string choice.
ParamValue = bool | int | float | str | None


class _Out(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="null")


class TrialStateName(str, enum.Enum):
    """Optuna's trial states."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    WAITING = "WAITING"


class StudyState(str, enum.Enum):
    """Where a study stands.

    ``running``: a trial runs, or a run this API started is alive; ``complete``: its trial budget
    is spent; ``stopped``: it ended before that (Ctrl-C, a crash, a timeout); ``empty``: no trial yet.
    """

    RUNNING = "running"
    COMPLETE = "complete"
    STOPPED = "stopped"
    EMPTY = "empty"


class Health(_Out):
    status: str = Field(description="`ok` when the storage answers.")
    storage: str = Field(description="The storage's database kind (sqlite, postgresql).")


class TrialCounts(_Out):
    total: int
    COMPLETE: int = 0
    FAIL: int = 0
    RUNNING: int = 0
    WAITING: int = 0
    PRUNED: int = 0
    interrupted: int = Field(
        default=0,
        description="Of the FAIL trials, those the tuner stopped (Ctrl-C, SIGTERM, a killed driver) while no "
        "config failed; their configs run again and they do not count against the trial budget.",
    )


class Objective(_Out):
    metric: str
    direction: str = Field(description="`maximize` or `minimize`.")


class StudySummary(_Out):
    """One study in the list."""

    name: str = Field(description="The study's name.")
    state: StudyState
    directions: list[str] = Field(description="Per objective, `maximize` or `minimize`.")
    metric_names: list[str] | None = Field(description="Per objective, the metric it is.")
    trials: TrialCounts = Field(description="Its trials by state; re-measurements and copies are trials too.")
    best_values: dict[str, float | None] | None = Field(
        description="Per objective, the best median among the configs of the Pareto front (see "
        "`/studies/{name}/pareto`); null while no config is feasible."
    )
    recommended_trial: int | None = Field(
        description="The trial that stands for the recommended config (see `/studies/{name}/recommendation`): "
        "of its loads, the one nearest their median. Null while no config is feasible."
    )
    datetime_start: Timestamp | None = Field(description="When its first trial started.")
    last_update: Timestamp | None = Field(description="When a trial last started or finished.")


class Bound(_Out):
    min: float | None = None
    max: float | None = None


class Worker(_Out):
    index: int
    node: str | None = None
    cores: list[int] = []


class RunInfo(_Out):
    """A `tuner optimize` process this API started for the study."""

    pid: int
    alive: bool
    returncode: int | None = Field(
        description="`tuner optimize`'s exit code, null while it runs: 0 done, 2 the study file was refused, "
        "3 its server, storage or perf_analyzer failed, 130 or 143 stopped."
    )


class StudyDetail(StudySummary):
    """A study with the file it ran with and the hardware of its workers."""

    study_file: dict[str, Any] | None = Field(description="The validated study file it last ran with.")
    objectives: list[Objective]
    constraints: dict[str, Bound]
    workers: list[Worker]
    worker_cores: int | None
    run: RunInfo | None
    verifications: list[Verification] = Field(
        default=[], description="Each time its recommendation (or a trial) was served fresh and measured again."
    )


class ConstraintMiss(_Out):
    """A constraint of the study that a measurement broke, and by how much."""

    metric: str = Field(description="The constrained metric.")
    value: float | None = Field(description="What was measured.")
    bound: float | None = Field(description="The bound it broke.")
    side: str = Field(description="`max` (the value is over the bound) or `min` (under it).")
    excess: float | None = Field(description="How far past the bound, in the metric's unit (> 0).")
    excess_pct: float | None = Field(description="The excess in percent of the bound; null where the bound is 0.")
    text: str = Field(description="The miss in words: `latency_p99_ms 61.2 > max 50 (+22%)`.")


class TrialSummary(_Out):
    """One trial (one load of one config): its params, values and feasibility."""

    number: int = Field(description="The trial's number in its study.")
    state: TrialStateName
    params: dict[str, ParamValue] = Field(description="The sampler's params.")
    values: list[float | None] | None = Field(description="Per objective, this load's value (COMPLETE trials).")
    feasible: bool = Field(description="COMPLETE and within every constraint of the study.")
    constraints: dict[str, float] = Field(
        description="Per constrained metric: <= 0 within the bound, the excess otherwise."
    )
    failed_constraints: list[ConstraintMiss] = Field(
        default=[], description="The study's constraints this trial's judged point broke, with the excess."
    )
    metrics: dict[str, Any] | None = Field(description="The numbers of the point the trial was judged by.")
    reused_from: int | None = Field(
        default=None,
        description="The trial whose result this one copies (its config was measured before); "
        "a copy is not a load of its own.",
    )
    remeasure_of: int | None = Field(
        default=None,
        description="The trial whose config this one measured again with a fresh load, to "
        "confirm it; its values count toward that config's median.",
    )
    datetime_start: Timestamp | None = Field(description="When it started.")
    datetime_complete: Timestamp | None = Field(description="When it finished.")
    fail_reason: str | None = Field(default=None, description="Why the trial failed (FAIL trials).")
    pruned_reason: str | None = Field(
        default=None,
        description="Why the trial stopped after its screening measurement (PRUNED trials); "
        "`metrics` (and a detail's `points`) then hold the screen's point.",
    )
    server_restarted: str | None = Field(
        default=None,
        description="Why the trial's server was restarted while it ran (it died); its config was then "
        "measured again from the start on the restarted server.",
    )


class TrialPage(_Out):
    total: int = Field(description="Trials that match the filter.")
    offset: int
    limit: int
    items: list[TrialSummary]


class Explanation(_Out):
    """One plain-language reading of a trial's numbers."""

    rule: str = Field(description="The rule that fired: queue, compute, batch_of_one, constraint, failed, ...")
    text: str


class TrialDetail(TrialSummary):
    """Everything stored about a trial."""

    points: list[LoadPoint] = Field(
        description="The measured curve: one point per concurrency, with the server breakdown."
    )
    config_pbtxt: str | None = Field(description="The config.pbtxt its server was given.")
    step_configs: dict[str, str] = Field(
        default={},
        description="For an ensemble, the config.pbtxt of each composing model by name (`config_pbtxt` is the "
        "ensemble's own).",
    )
    spec: dict[str, Any] | None = Field(description="The config the worker measured.")
    error: str | None = Field(description="The worker's error, where the measurement failed.")
    timings_s: dict[str, float] | None = Field(description="Seconds per phase: variant, load, warm-up, measure, ...")
    accuracy: dict[str, Any] | None = Field(
        description="The variant's answers against the FP32 model's, where checked."
    )
    default_config: bool = Field(description="The model's default config.")
    interrupted: bool = Field(default=False, description="The tuner stopped while it ran; its config ran again.")
    worker: int | None = Field(description="The worker that measured it.")
    server: dict[str, dict[str, Any]] = Field(
        default={},
        description="By concurrency (as text), what the server did while measured: queue and "
        "compute times, the batch sizes it executed, CPU/GPU use where measured; for an ensemble, `steps` "
        "holds each composing model's.",
    )
    explanations: list[Explanation] = Field(
        default=[], description="What its numbers say: where the time went, what failed, what to try next."
    )


class Interval(_Out):
    """Where a config's median of the first objective lies, from its loads and their windows."""

    low: float | None = Field(description="The lower end.")
    high: float | None = Field(description="The upper end.")


class ConfigSummary(_Out):
    """One config with every fresh load of it, judged by the median of their values."""

    trial: int = Field(
        description="The trial that stands for the config: of its loads, the one nearest the median of the "
        "first objective (its curve and server windows describe the config)."
    )
    loads: list[int] = Field(description="The numbers of every trial that measured the config with a load of its own.")
    values: list[float | None] = Field(description="Per objective, the median over the loads.")
    interval: Interval = Field(
        description="Where the median of the first objective lies: the range of the loads, each widened by its "
        "own window spread; a config whose median lies in the leader's interval ties with it."
    )
    spread_pct: float | None = Field(description="(max - min) / median of the first objective over the loads, in %.")
    feasible: bool = Field(description="Within every constraint of the study by the median of its loads.")
    params: dict[str, ParamValue] = Field(description="The sampler's params of the config.")
    metrics: dict[str, float | None] = Field(description="Every numeric metric's median over the loads.")
    default_config: bool = Field(description="The model's default config.")


class ParetoFront(_Out):
    """The Pareto front over configs (not single loads) and the recommendation."""

    study: str = Field(description="The study's name.")
    directions: list[str] = Field(description="Per objective, `maximize` or `minimize`.")
    metric_names: list[str] | None = Field(description="Per objective, the metric it is.")
    recommended_trial: int | None = Field(
        description="The trial that stands for the recommended config (see `/studies/{name}/recommendation`)."
    )
    reason: str | None = Field(description="Why that config is recommended; null while no config is feasible.")
    configs: list[ConfigSummary] = Field(
        description="The feasible configs no other feasible config dominates by the medians of their loads, "
        "in the order they were first measured."
    )


class Limits(_Out):
    max_p99_ms: float | None = Field(description="The highest p99 latency asked for, in ms.")
    min_throughput: float | None = Field(description="The lowest throughput asked for, in infer/s.")


class Recommendation(_Out):
    """The config to deploy.

    Without limits, the study's own verdict, the same as the CLI's, the report's and the export's:
    among the configs feasible by the median of their loads, the best median of the first
    objective leads; the configs whose medians lie in its interval tie with it, and the cheapest of
    them wins. With limits, the config and concurrency with the best median throughput over its
    loads whose medians are within them, from every concurrency of the stored curves; the study's
    accuracy bound still holds.
    """

    study: str = Field(description="The study's name.")
    limits: Limits = Field(description="The limits asked for; both null for the study's own recommendation.")
    trial: int = Field(
        description="Without limits, the trial that stands for the recommended config; with limits, the load "
        "of the chosen config whose throughput at the chosen concurrency is nearest the median."
    )
    params: dict[str, ParamValue] = Field(description="The trial's params.")
    point: LoadPoint | None = Field(
        description="Without limits, the point the trial was judged by; with limits, the medians over the "
        "config's loads at the chosen concurrency, each number its own median. Null where the trial stores no "
        "point."
    )
    config_pbtxt: str | None = Field(description="The config.pbtxt to deploy: the one the trial's server was given.")
    reason: str = Field(description="What the choice rests on, in a sentence or two.")
    config: ConfigSummary | None = Field(
        description="The config of `trial`, with all its loads; null where the trial is no load of its own."
    )
    tied: list[ConfigSummary] = Field(
        default=[],
        description="Without limits, the configs whose medians lie in the leader's interval, the "
        "recommended one included; the leader's loads cannot tell them from it. Empty with limits.",
    )


class StudyStarted(_Out):
    name: str
    pid: int
    url: str = Field(description="Where to read the study.")


class StudyDeleted(_Out):
    name: str
    stopped_run: bool = Field(description="Whether a run this API started was stopped first.")


# --- Verifications: a recommendation served fresh and measured again (`tuner verify`) ---------------


class VerificationRun(_Out):
    """One perf_analyzer run on a fresh load of the config."""

    throughput: float = Field(description="Inferences per second.")
    latency_p99_ms: float
    value: float = Field(description="The study's first objective, as this run measured it.")
    stable: bool = Field(description="perf_analyzer's windows agreed.")
    contaminated: bool = Field(
        default=False,
        description="Other processes used more than the study's `load.contamination_cpu_pct` of a core while it ran.",
    )


class Verification(_Out):
    """A config exported, served on a fresh server and measured again, and whether it held."""

    when: Timestamp
    trial: int = Field(description="The trial whose config was exported.")
    config_key: str = Field(description="The config's canonical text.")
    metric: str = Field(description="The first objective, which the verdict is on.")
    maximize: bool
    repeats: int
    concurrency: int = Field(description="The concurrency measured at: the recommended point's.")
    runs: list[VerificationRun]
    verified_median: float = Field(description="The median of the runs' first objective.")
    stored_median: float = Field(description="The config's stored median of the first objective.")
    interval: list[float] = Field(min_length=2, max_length=2, description="The config's stored interval: low, high.")
    holds: bool = Field(
        description="The verified median lies within the interval, or within `tolerance_pct` of the stored median, "
        "and no bound of the study's is broken by the runs' medians (`bounds_missed`)."
    )
    bounds_missed: list[str] = Field(
        default_factory=list,
        description="The study's bounds on throughput and latency that the runs' medians break, as "
        "`latency_p99_ms 10.4 > max 10`.",
    )
    verdict: str = Field(
        description="`holds`, `does not hold`, or `inconclusive`: it did not hold on runs some of which shared "
        "the CPU with other processes."
    )
    tolerance_pct: float
    throughput_median: float
    latency_p99_median_ms: float
    launch: str = Field(description="The launch mode of the server it ran on.")
    command: str = Field(description="The perf_analyzer command that repeats one run (from the export's README).")
    versions: dict[str, str]
    machine: dict[str, Any]


class VerificationOutcome(str, enum.Enum):
    """How a verification started by this API stands: `refused` is bad input (exit code 2); `inconclusive`: it did
    not hold on runs that shared the CPU with other processes (exit code 3); `failed` is any other end: its
    server, perf_analyzer or the storage failed (exit code 3), or it was stopped."""

    RUNNING = "running"
    HOLDS = "holds"
    DOES_NOT_HOLD = "does not hold"
    INCONCLUSIVE = "inconclusive"
    REFUSED = "refused"
    FAILED = "failed"


class VerificationStarted(_Out):
    name: str
    pid: int
    trial: int | None = Field(description="The trial whose config is verified; null: the recommendation.")
    repeats: int
    status_url: str = Field(description="Where to see whether it still runs and how it ended.")
    url: str = Field(description="Where to read the result once stored: the study's `verifications`.")


class VerificationStatus(_Out):
    """The last verification of the study that this API started."""

    name: str
    pid: int
    trial: int | None
    repeats: int
    outcome: VerificationOutcome
    returncode: int | None = Field(
        description="`tuner verify`'s exit code: 0 holds, 1 does not, 2 refused, 3 inconclusive or the environment "
        "failed, 143 stopped."
    )
    message: str = Field(description="The last line of its output: the verdict, or why it was refused or failed.")
