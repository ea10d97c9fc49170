"""What routes depend on: the app's shared objects and the bearer-token rules.

Writes need ``Authorization: Bearer TOKEN`` with the configured token; without a configured
token they are off (403). Reads are open unless ``read_token_required``, in which case
``create_app`` puts the same check on them (so the OpenAPI schema says which routes need the
token). A missing token is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403; tokens are
compared in constant time.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.runs import RunManager
from api.settings import ApiSettings
from api.studies import StudyCache
from api.verify_runs import VerifyManager
from tuner.storage import Store

# Dependencies are ``async def`` although they never await: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hop per dependency per request.

_bearer = HTTPBearer(auto_error=False, description="The token set in TUNER_API_TOKEN.")


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_studies(request: Request) -> StudyCache:
    return request.app.state.studies


async def get_runs(request: Request) -> RunManager:
    return request.app.state.runs


async def get_verifier(request: Request) -> VerifyManager:
    return request.app.state.verifier


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
StudiesDep = Annotated[StudyCache, Depends(get_studies)]
RunsDep = Annotated[RunManager, Depends(get_runs)]
VerifierDep = Annotated[VerifyManager, Depends(get_verifier)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]

#: A study name in a route's path. Optuna's ``study_name`` column holds 512 characters and
#: PostgreSQL's strings no NUL: a name outside them is no study's, and answers 422 instead of
#: an error from the storage. Looser than the study file's names, so studies made elsewhere
#: (Optuna, older versions) stay readable.
StudyName = Annotated[str, Path(description="The study's name.", max_length=512, pattern=r"^[^\x00]+$")]


def _matches(token: SecretStr, credentials: HTTPAuthorizationCredentials) -> bool:
    return secrets.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode())


def _check_token(settings: ApiSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if settings.token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the API was started without TUNER_API_TOKEN: writes and verifications are off"
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not _matches(settings.token, credentials):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong token")


async def require_token(settings: SettingsDep, credentials: Credentials) -> None:
    """Lets a request through only with the configured token (writes; reads where required)."""
    _check_token(settings, credentials)


async def has_token(request: Request, settings: SettingsDep) -> bool:
    """Whether a read carries the configured token: it then sees the fields that can hold secrets.

    The header is read here rather than through the bearer scheme, so that the OpenAPI schema does
    not call the token required where it is optional.
    """
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if settings.token is None or scheme.lower() != "bearer" or not given:
        return False
    return _matches(settings.token, HTTPAuthorizationCredentials(scheme=scheme, credentials=given.strip()))


TrustedDep = Annotated[bool, Depends(has_token)]
