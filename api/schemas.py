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


class Objective(_Out):
    metric: str
    direction: str = Field(description="`maximize` or `minimize`.")


class StudySummary(_Out):
    """One study in the list."""

    name: str
    state: StudyState
    directions: list[str]
    metric_names: list[str] | None
    trials: TrialCounts
    best_values: dict[str, float | None] | None = Field(
        description="Per objective, the best value among feasible COMPLETE trials; null without one."
    )
    recommended_trial: int | None = Field(description="The feasible trial best by the first objective.")
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
    returncode: int | None


class StudyDetail(StudySummary):
    """A study with the file it ran with and the hardware of its workers."""

    study_file: dict[str, Any] | None = Field(description="The validated study file it last ran with.")
    objectives: list[Objective]
    constraints: dict[str, Bound]
    workers: list[Worker]
    worker_cores: int | None
    run: RunInfo | None


class TrialSummary(_Out):
    """One trial: its params, values and feasibility."""

    number: int
    state: TrialStateName
    params: dict[str, ParamValue]
    values: list[float | None] | None
    feasible: bool = Field(description="COMPLETE and within every constraint of the study.")
    constraints: dict[str, float] = Field(
        description="Per constrained metric: <= 0 within the bound, the excess otherwise."
    )
    metrics: dict[str, Any] | None = Field(description="The numbers of the point the trial was judged by.")
    datetime_start: Timestamp | None
    datetime_complete: Timestamp | None


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
    config_pbtxt: str | None
    spec: dict[str, Any] | None = Field(description="The config the worker measured.")
    error: str | None
    fail_reason: str | None
    timings_s: dict[str, float] | None
    accuracy: dict[str, Any] | None = Field(
        description="The variant's answers against the FP32 model's, where checked."
    )
    default_config: bool
    reused_from: int | None
    worker: Any = Field(description="The worker that measured it.")
    user_attrs: dict[str, Any] = Field(
        description="Every attribute the tuner stored on the trial (CPU/GPU use among them, where measured)."
    )
    explanations: list[Explanation] = Field(
        default=[], description="What its numbers say: where the time went, what failed, what to try next."
    )


class ParetoFront(_Out):
    study: str
    directions: list[str]
    metric_names: list[str] | None
    recommended_trial: int | None
    trials: list[TrialSummary] = Field(description="The feasible COMPLETE trials no other dominates.")


class Limits(_Out):
    max_p99_ms: float | None
    min_throughput: float | None


class Recommendation(_Out):
    """The best measured point within the limits asked for, and its trial's config."""

    study: str
    limits: Limits
    trial: int
    params: dict[str, ParamValue]
    point: LoadPoint = Field(description="The point (one concurrency of the trial's curve) within the limits.")
    config_pbtxt: str | None


class StudyStarted(_Out):
    name: str
    pid: int
    url: str = Field(description="Where to read the study.")


class StudyDeleted(_Out):
    name: str
    stopped_run: bool = Field(description="Whether a run this API started was stopped first.")
