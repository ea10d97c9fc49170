"""``/studies/{name}/verify``: serve a study's recommendation fresh and measure it again (`tuner verify`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import RunsDep, SettingsDep, StoreDep, StudiesDep, StudyName, VerifierDep, require_token
from api.errors import error_responses
from api.schemas import VerificationOutcome, VerificationStarted, VerificationStatus
from api.verify_runs import check_verifiable
from tuner.errors import StudyNotFoundError
from tuner.reports import MAX_REPEATS

router = APIRouter(tags=["verify"], dependencies=[Depends(require_token)])


@router.post(
    "/studies/{name}/verify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=VerificationStarted,
    responses=error_responses(400, 401, 403, 404, 409, 503),
)
def start_verification(
    name: StudyName,
    request: Request,
    store: StoreDep,
    studies: StudiesDep,
    runs: RunsDep,
    settings: SettingsDep,
    verifier: VerifierDep,
    trial: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="Verify this trial's config [default: the recommendation].")
    ] = None,
    repeats: Annotated[int, Query(ge=1, le=MAX_REPEATS, description="perf_analyzer runs, each on a fresh load.")] = 3,
) -> VerificationStarted:
    """Exports the study's recommended config, serves it on a fresh server and measures it again.

    Runs `tuner verify` in the background: the config is written as a model repository, a server of
    the study's launch mode serves it, and perf_analyzer measures it `repeats` times at the
    recommended point's concurrency, each run on a fresh load. It holds where the median of the
    runs lies within the config's interval or within 10% of its stored median. The
    result is stored with the study (`GET /studies/{name}`, `verifications`); the status URL says
    whether it still runs and how it ended.

    Refused (409) while the study runs, or while another verification of it runs.
    """
    opened = studies.get(name)
    current = runs.get(name)
    running = current is not None and current.alive
    verifier.check_idle(name, store, running)  # 409 before anything else: the study may have no result yet
    check_verifiable(opened.study, settings, trial, repeats)
    run = verifier.start(name, store, running, trial, repeats)
    return VerificationStarted(
        name=name,
        pid=run.process.pid,
        trial=trial,
        repeats=repeats,
        status_url=str(request.url_for("verification_status", name=name)),
        url=str(request.url_for("get_study", name=name)),
    )


@router.get(
    "/studies/{name}/verify",
    response_model=VerificationStatus,
    responses=error_responses(401, 403, 404, 503),
)
async def verification_status(name: StudyName, verifier: VerifierDep) -> VerificationStatus:
    """Whether the last verification this API started of the study still runs, and how it ended."""
    run = verifier.get(name)
    if run is None:
        raise StudyNotFoundError(f"no verification of study {name!r} was started by this API")
    message = await run_in_threadpool(run.last_line)
    return VerificationStatus(
        name=name,
        pid=run.process.pid,
        trial=run.trial,
        repeats=run.repeats,
        outcome=VerificationOutcome(run.outcome),
        returncode=run.process.poll(),
        message=message,
    )
