"""A study's trials, its Pareto front and the best config under given limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from optuna.trial import TrialState

from api import studies as views
from api.deps import StoreDep, StudiesDep, StudyName
from api.errors import NoRecommendationError, error_responses
from api.schemas import Limits, ParetoFront, Recommendation, TrialDetail, TrialPage, TrialStateName
from tuner import results as rs
from tuner.explain import bounds_of
from tuner.store import StudyNotFoundError

#: Reads only; ``create_app`` adds the token check where reads need it.
router = APIRouter(tags=["trials"])

TrialNumber = Annotated[int, Path(ge=0, description="The trial's number in its study.")]
_READ_ERRORS = error_responses(401, 403, 404, 503)


@router.get("/studies/{name}/trials", response_model=TrialPage, responses=_READ_ERRORS)
def list_trials(
    name: StudyName,
    studies: StudiesDep,
    state: Annotated[TrialStateName | None, Query(description="Only trials in this state.")] = None,
    feasible: Annotated[bool | None, Query(description="Only feasible (or only infeasible) trials.")] = None,
    offset: Annotated[int, Query(ge=0, description="Trials to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Trials to return at most.")] = 100,
) -> TrialPage:
    """The study's trials by number, with their params, values and feasibility."""
    trials = studies.get(name).trials()
    if state is not None:
        trials = [t for t in trials if t.state == TrialState[state.value]]
    if feasible is not None:
        trials = [t for t in trials if rs.is_feasible(t) == feasible]
    page = trials[offset : offset + limit]
    return TrialPage(total=len(trials), offset=offset, limit=limit, items=[views.trial_summary(t) for t in page])


@router.get("/studies/{name}/trials/{number}", response_model=TrialDetail, responses=_READ_ERRORS)
def get_trial(name: StudyName, number: TrialNumber, studies: StudiesDep, store: StoreDep) -> TrialDetail:
    """Everything stored about a trial: its curve, server breakdown, config, timings and accuracy."""
    opened = studies.get(name)
    return views.trial_detail(store, views.trial_of(opened.trials(), name, number), bounds_of(opened.study))


@router.get(
    "/studies/{name}/trials/{number}/config.pbtxt",
    response_class=PlainTextResponse,
    responses=_READ_ERRORS,
)
def get_trial_config(name: StudyName, number: TrialNumber, studies: StudiesDep, store: StoreDep) -> str:
    """The config.pbtxt the trial's server was given, as text."""
    trial = views.trial_of(studies.get(name).trials(), name, number)
    record = store.records([trial._trial_id]).get(trial._trial_id)  # noqa: SLF001 - the tuner's rows are keyed by it
    if record is None:
        raise StudyNotFoundError(f"trial {number} of study {name!r} has no config stored (state {trial.state.name})")
    return record.config_pbtxt


@router.get("/studies/{name}/pareto", response_model=ParetoFront, responses=_READ_ERRORS)
def get_pareto(name: StudyName, studies: StudiesDep, store: StoreDep) -> ParetoFront:
    """The feasible Pareto front: COMPLETE trials within the study's constraints that no other dominates."""
    return views.pareto(studies.get(name), store)


PositiveLimit = Annotated[float | None, Query(gt=0, allow_inf_nan=False)]


@router.get("/studies/{name}/recommendation", response_model=Recommendation, responses=_READ_ERRORS)
def get_recommendation(
    name: StudyName,
    studies: StudiesDep,
    store: StoreDep,
    max_p99_ms: Annotated[PositiveLimit, Query(description="The highest p99 latency allowed, in ms.")] = None,
    min_throughput: Annotated[PositiveLimit, Query(description="The lowest throughput allowed, in infer/s.")] = None,
) -> Recommendation:
    """The highest-throughput measured point within the limits, among COMPLETE trials.

    Every concurrency of each trial's stored curve counts, so the limits may differ from the
    study's own constraints. 404, with the reason, when no point is within them.
    """
    snap = studies.get(name).snapshot(store)
    found = snap.curves.best(max_p99_ms=max_p99_ms, min_throughput=min_throughput)
    if found is None:
        raise NoRecommendationError(_no_point_reason(name, len(snap.complete), max_p99_ms, min_throughput))
    trial_id, point = found
    trial = snap.complete[trial_id]
    return Recommendation(
        study=name,
        limits=Limits(max_p99_ms=max_p99_ms, min_throughput=min_throughput),
        trial=trial.number,
        params=trial.params,
        point=point,
        config_pbtxt=snap.configs.get(trial_id),
    )


def _no_point_reason(name: str, complete: int, max_p99_ms: float | None, min_throughput: float | None) -> str:
    limits = [f"p99 <= {max_p99_ms:g} ms" if max_p99_ms is not None else "",
              f"throughput >= {min_throughput:g} infer/s" if min_throughput is not None else ""]
    within = " and ".join(x for x in limits if x) or "any limit"
    return f"none of the {complete} COMPLETE trials of study {name!r} measured a point with {within}"
