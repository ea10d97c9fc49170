"""A property-based run (schemathesis) against the API's own OpenAPI schema, on a real server.

Every operation gets generated requests, valid ones and (schemathesis' negative mode) ones that
break the schema: path names, trial numbers, query values, study-file bodies, with and without
the token. No answer may be a 5xx, and each must
match the schema (status documented, body of the documented shape and content type). A second
pass aims the generated requests at studies that exist, so the reads get past the 404.

The example counts are per operation and generation mode. SQLite takes the most: PostgreSQL answers
the same routes through the same code and adds only what its driver refuses (NUL bytes in names),
which a smaller count still reaches. Without the token the writes answer 401 before reading the
body, so a few examples show that no malformed request gets past that.
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


def _examples(server: ApiServer, on_sqlite: int) -> int:
    """``on_sqlite`` examples on SQLite, half as many (at least 5) on PostgreSQL."""
    return on_sqlite if server.storage.startswith("sqlite") else max(5, on_sqlite // 2)


def _is_read(operation) -> bool:
    return operation.method.upper() == "GET"


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_no_request_breaks_the_api(api_server: ApiServer, token: str | None) -> None:
    for operation in _operations(api_server):
        if token is None:  # the reads answer as with the token; the writes refuse before the body
            examples = 10 if _is_read(operation) else 5
        else:
            examples = 25
        _run(api_server, operation, None, token, examples=_examples(api_server, examples))


@pytest.mark.parametrize("study", ["small_study", "remeasured_study"])
def test_no_request_on_an_existing_study_breaks_the_api(api_server: ApiServer, study: str,
                                                        request: pytest.FixtureRequest) -> None:
    name = request.getfixturevalue(study)  # the remeasured one has configs of several loads, copies and misses
    for operation in _operations(api_server):
        if operation.method.upper() in ("DELETE", "POST"):
            continue  # the study must outlive the run; POST has no name
        # the small study drives every read; the re-measured one adds answers of several loads each
        _run(api_server, operation, name, None,
             examples=_examples(api_server, 40 if study == "small_study" else 12))
