"""A study's trials, its Pareto front over configs and the recommendation (the study's own, or under limits)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from optuna.trial import TrialState

from api import views
from api.deps import StoreDep, StudiesDep, StudyName
from api.errors import error_responses
from api.schemas import ParetoFront, Recommendation, TrialDetail, TrialPage, TrialStateName

#: Reads only; ``create_app`` adds the token check where reads need it.
router = APIRouter(tags=["trials"])

TrialNumber = Annotated[int, Path(ge=0, description="The trial's number in its study.")]
_READ_ERRORS = error_responses(401, 403, 404, 503)


@router.get("/studies/{name}/trials", response_model=TrialPage, responses=_READ_ERRORS)
def list_trials(
    name: StudyName,
    studies: StudiesDep,
    store: StoreDep,
    state: Annotated[TrialStateName | None, Query(description="Only trials in this state.")] = None,
    feasible: Annotated[bool | None, Query(description="Only feasible (or only infeasible) trials.")] = None,
    offset: Annotated[int, Query(ge=0, description="Trials to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Trials to return at most.")] = 100,
) -> TrialPage:
    """The study's trials (one load each) by number, with their params, values, feasibility and failed constraints."""
    wanted = TrialState[state.value] if state is not None else None
    return views.trial_page(studies.get(name), store, wanted, feasible, offset, limit)


@router.get("/studies/{name}/trials/{number}", response_model=TrialDetail, responses=_READ_ERRORS)
def get_trial(name: StudyName, number: TrialNumber, studies: StudiesDep, store: StoreDep) -> TrialDetail:
    """Everything stored about a trial: its curve, server breakdown, config, timings and accuracy."""
    return views.trial_detail(studies.get(name), store, number)


@router.get(
    "/studies/{name}/trials/{number}/config.pbtxt",
    response_class=PlainTextResponse,
    responses=_READ_ERRORS,
)
def get_trial_config(name: StudyName, number: TrialNumber, studies: StudiesDep, store: StoreDep) -> str:
    """The config.pbtxt the trial's server was given, as text."""
    return views.trial_config(studies.get(name), store, number)


@router.get("/studies/{name}/pareto", response_model=ParetoFront, responses=_READ_ERRORS)
def get_pareto(name: StudyName, studies: StudiesDep, store: StoreDep) -> ParetoFront:
    """The feasible Pareto front over configs: each config with all its loads, judged by their medians.

    A config measured again to confirm it is one entry, not one per load; ``recommended_trial`` and
    ``reason`` are the study's recommendation (see ``/studies/{name}/recommendation``).
    """
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
    """The config to deploy.

    Without limits: the study's recommendation, the same as `tuner optimize`, `tuner report` and
    `tuner export` give. Of the configs within the study's constraints by the median of their loads,
    the one with the best median of the first objective leads; the configs whose medians lie in the
    leader's interval tie with it, and the cheapest of them is recommended. The answer says why and names
    the tied configs.

    With limits: the config and concurrency with the highest median throughput over the config's loads
    whose medians are within them. Every concurrency of each load's stored curve counts, so the limits
    may differ from the study's own constraints; a config whose medians break the study's accuracy bound
    is never the answer.

    404, with the reason, when no config is feasible or no point is within the limits.
    """
    return views.recommendation(studies.get(name), store, max_p99_ms, min_throughput)
