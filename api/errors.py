"""The API's errors and the one place that maps the tuner's exceptions to HTTP status codes.

    TunerError (tuner.errors)
    ├── ConfigError                     400 a posted study file is invalid (the message names the field)
    ├── StorageError                    503 the storage does not answer
    │   └── StudyNotFoundError          404 no such study or trial (tuner.storage)
    │       └── NoRecommendationError   404 no trial within the limits asked for
    └── ApiError
        ├── ConflictError               409 the study exists, or is running elsewhere
        ├── BadBodyError                400 the body is not YAML or JSON
        ├── UnsupportedMediaError       415 the body is neither
        ├── BodyTooLargeError           413
        └── RunFailedError              500 a started study exited before it was stored
            └── RunEnvironmentError     503 ... with exit code 3: its server, storage or perf_analyzer failed

A run's exit code (``tuner.errors.ExitCode``) becomes one of these in ``run_exit_error``: 2 (the
user's input) a ConfigError, 3 (the environment) a RunEnvironmentError, any other a RunFailedError.
Authentication answers 401/403 itself (``api.deps``); FastAPI answers bad parameters with 422.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from tuner.errors import ConfigError, ExitCode, StorageError, StudyNotFoundError, TunerError

logger = logging.getLogger(__name__)


class ApiError(TunerError):
    """A request the API refuses for a reason of its own."""


class ConflictError(ApiError):
    """The request conflicts with what exists or runs."""


class BadBodyError(ApiError):
    """The request body cannot be read as a study file."""


class UnsupportedMediaError(ApiError):
    """The request body's content type is not one the route reads."""


class BodyTooLargeError(ApiError):
    """The request body is larger than the API accepts."""


class RunFailedError(ApiError):
    """A study process started by the API exited before its study was stored."""


class RunEnvironmentError(RunFailedError):
    """A study process exited before its study was stored for want of what it runs on (exit code 3).

    The study file was valid: a Triton server, the storage or perf_analyzer failed, so it is the
    service that is unavailable, not the request that is wrong.
    """


class NoRecommendationError(StudyNotFoundError):
    """No trial of the study is within the limits asked for."""


class ErrorBody(BaseModel):
    """The body of every error the API answers itself."""

    detail: str


#: Most specific first: the first class an exception is an instance of gives the status.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (StudyNotFoundError, 404),
    (ConflictError, 409),
    (BadBodyError, 400),
    (ConfigError, 400),
    (UnsupportedMediaError, 415),
    (BodyTooLargeError, 413),
    (RunEnvironmentError, 503),
    (StorageError, 503),
    (SQLAlchemyError, 503),
    (optuna.exceptions.StorageInternalError, 503),
    (TunerError, 500),
)


def run_exit_error(code: int, output: str) -> TunerError:
    """The error of a `tuner` process that exited with ``code`` before doing its job.

    Args:
        code: Its exit code.
        output: The end of its output, whose last line is its ``error: ...`` message.
    """
    if code == ExitCode.INPUT:  # its last error line is the whole answer, as a validation error's is
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        return ConfigError(errors[-1].removeprefix("error: ") if errors else output or "the study was refused")
    if code == ExitCode.ENVIRONMENT:
        return RunEnvironmentError(f"the study could not run here (exit code {code}): {output}")
    return RunFailedError(f"the study process exited with code {code}: {output}")


def status_for(exc: Exception) -> int:
    """The HTTP status code of an exception (500 for one not in STATUS_BY_ERROR)."""
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return 500


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    password = sa.make_url(request.app.state.settings.storage).password

    def hidden(text: str) -> str:  # a run's output or a driver's message may quote the storage URL
        return text.replace(str(password), "***") if password else text

    if status == 503:  # the storage or the machine, not the API: one line each, as a poll during an outage repeats it
        logger.warning("%s %s answered 503: %s", request.method, request.url.path, hidden(_first_line(exc)))
    elif status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    detail = str(exc) if status < 500 or isinstance(exc, TunerError) else "the storage does not answer"
    return JSONResponse(status_code=status, content={"detail": hidden(detail)})


def _first_line(exc: Exception) -> str:
    """The exception's type and message up to its first line break (SQLAlchemy's add the statement and a link)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def install_error_handlers(app: FastAPI) -> None:
    """Answers the tuner's exceptions (and the storage's) with their status codes."""
    for error_type in (TunerError, SQLAlchemyError, optuna.exceptions.StorageInternalError):
        app.add_exception_handler(error_type, _handle)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of a route's error answers, for its ``responses=``.

    Always JSON, also on routes whose own answer is text (FastAPI would otherwise document the
    errors in the route's media type).
    """
    descriptions = {
        400: "The study file is invalid (the message names the field) or is not YAML/JSON.",
        401: "A bearer token is needed and none was given.",
        403: "The token is wrong, or no token is configured (writes and verifications are off).",
        404: "No such study or trial, or none within the limits.",
        409: "The study exists already, or runs in a process this API did not start, or TUNER_API_MAX_RUNS runs are alive.",
        413: "The study file is too large.",
        415: "The body is neither YAML nor JSON.",
        500: "A started study exited before it was stored.",
        503: "The storage does not answer, or a started study exited before it was stored because its server,"
        " storage or perf_analyzer failed (`tuner` exit code 3).",
    }
    schema = ErrorBody.model_json_schema()
    return {
        status: {"description": descriptions[status], "content": {"application/json": {"schema": schema}}}
        for status in statuses
    }
