"""``/studies``: list, read, start and delete studies."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from api import views
from api.deps import RunsDep, SettingsDep, StoreDep, StudiesDep, StudyName, TrustedDep, VerifierDep, require_token
from api.errors import BadBodyError, BodyTooLargeError, ConflictError, UnsupportedMediaError, error_responses
from api.runs import remove_study_files, validate_study
from api.schemas import RunInfo, StudyDeleted, StudyDetail, StudyStarted, StudySummary
from tuner.config import parse_yaml
from tuner.errors import ConfigError, StudyNotFoundError
from tuner.storage import live_driver

#: The reads; ``create_app`` adds the token check where reads need it.
router = APIRouter(tags=["studies"])
#: The writes, which always need the token.
write_router = APIRouter(tags=["studies"], dependencies=[Depends(require_token)])

_JSON_TYPES = ("application/json",)
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_STUDY_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A study file, as `tuner optimize` reads it (see the README). `storage` and "
        "`work_dir` are replaced by the API's own; relative paths are taken from the API's study root.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}


@router.get("/studies", response_model=list[StudySummary], responses=error_responses(401, 403, 503))
def list_studies(store: StoreDep, studies: StudiesDep, runs: RunsDep) -> list[StudySummary]:
    """Every study: its state, trial counts, best values, recommended trial, and when it started and last changed."""
    found = []
    for name in store.study_names():
        run = runs.get(name)
        try:
            found.append(views.summary(studies.get(name), store, run.alive if run is not None else None))
        except StudyNotFoundError:  # deleted meanwhile, before it was opened or while it was read
            continue
    return found


@router.get("/studies/{name}", response_model=StudyDetail, responses=error_responses(401, 403, 404, 503))
def get_study(name: StudyName, store: StoreDep, studies: StudiesDep, runs: RunsDep, trusted: TrustedDep) -> StudyDetail:
    """The study file it ran with, its objectives and constraints, and its workers' hardware.

    Fields that can hold a secret (``server.docker_args``) show as ``***`` without the token.
    """
    opened = studies.get(name)
    run = runs.get(name)
    info = RunInfo(pid=run.process.pid, alive=run.alive, returncode=run.process.poll()) if run else None
    return views.detail(opened, store, info, trusted=trusted)


@write_router.post(
    "/studies",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyStarted,
    responses=error_responses(400, 401, 403, 409, 413, 415, 500, 503),
    openapi_extra=_STUDY_FILE_BODY,
)
async def start_study(request: Request, settings: SettingsDep, runs: RunsDep) -> StudyStarted:
    """Starts a study in the background; answers once the study is in the storage."""
    body = await _read_body(request, settings.max_body_bytes)
    # parsed off the event loop: a large document takes seconds that every other request would wait
    data = await run_in_threadpool(_parse_body, body, request.headers.get("content-type"))
    cfg = await run_in_threadpool(validate_study, data, settings)
    run = await run_in_threadpool(runs.start, cfg)
    return StudyStarted(name=cfg.study, pid=run.process.pid, url=str(request.url_for("get_study", name=cfg.study)))


@write_router.delete(
    "/studies/{name}",
    response_model=StudyDeleted,
    responses=error_responses(401, 403, 404, 409, 503),
)
def delete_study(
    name: StudyName,
    store: StoreDep,
    studies: StudiesDep,
    runs: RunsDep,
    settings: SettingsDep,
    verifier: VerifierDep,
    force: Annotated[bool, Query(description="Delete even while another process runs the study.")] = False,
) -> StudyDeleted:
    """Stops the study's run and verification (if this API started them) and deletes the study with all its
    rows and files."""
    if runs.get(name) is None:  # not started here: another driver may hold the study's lease
        studies.get(name)  # 404 when it does not exist
        driver = live_driver(store, name)
        if driver is not None and not force:
            raise ConflictError(
                f"study {name!r} is being run by a tuner this API did not start: {driver.describe(time.time())}; "
                "stop it there first, or delete with ?force=true"
            )
    stopped = runs.stop(name)
    runs.forget(name)
    verifier.remove(name)  # a verification would store its result with a study that is gone
    studies.forget(name)
    try:
        store.delete_study(name)
    except StudyNotFoundError:
        if not stopped:
            raise
    remove_study_files(settings, name)
    return StudyDeleted(name=name, stopped_run=stopped)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"the study file is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(f"the study file is over {limit} bytes")
    return bytes(body)


def _parse_body(body: bytes, content_type: str | None) -> Any:
    media = (content_type or "application/yaml").split(";")[0].strip().lower()
    if media not in _JSON_TYPES + _YAML_TYPES:
        raise UnsupportedMediaError(f"send the study file as application/yaml or application/json, not {media}")
    try:
        text = body.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_unique_keys) if media in _JSON_TYPES else parse_yaml(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BadBodyError(f"the study file is not valid {'JSON' if media in _JSON_TYPES else 'YAML'}: {exc}") from None
    except RecursionError:
        raise BadBodyError("the study file is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError("study file: expected a mapping of fields at the top level")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, where a key given twice is an error rather than the last one silently (as in YAML)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise BadBodyError(f"the study file is not valid JSON: {key!r} is given twice in the same object")
        data[key] = value
    return data
