"""A property-based run (schemathesis) against the API's own OpenAPI schema, on a real server.

Every operation gets generated requests, valid ones and (schemathesis' negative mode) ones that
break the schema: path names, trial numbers, query values, study-file bodies, with and without
the token. No answer may be a 5xx, and each must
match the schema (status documented, body of the documented shape and content type). A second
pass aims the generated requests at a study that exists, so the reads get past the 404.
"""

from __future__ import annotations

import pytest
import schemathesis
from api_helpers import TOKEN, ApiServer
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


def _operations(server: ApiServer) -> list:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _run(server: ApiServer, operation, study: str | None, token: str | None, examples: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    fixed = {"name": study} if study is not None and "{name}" in operation.path else None
    for mode in GenerationMode:

        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise  # else: the operation takes nothing that could be invalid (/healthz)


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_no_request_breaks_the_api(api_server: ApiServer, token: str | None) -> None:
    for operation in _operations(api_server):
        _run(api_server, operation, None, token, examples=25)


def test_no_request_on_an_existing_study_breaks_the_api(api_server: ApiServer, small_study: str) -> None:
    for operation in _operations(api_server):
        if operation.method.upper() in ("DELETE", "POST"):
            continue  # the study must outlive the run; POST has no name
        _run(api_server, operation, small_study, None, examples=60)
