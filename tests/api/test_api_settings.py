"""The API's settings and its one table of error statuses."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.errors import ConflictError, NoRecommendationError, status_for
from api.settings import ApiSettings
from tuner.errors import ConfigError, MeasurementError, StorageError, StudyNotFoundError


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = ApiSettings.from_env("sqlite:///x.db", {
        "TUNER_API_TOKEN": "a" * 20, "TUNER_API_READ_TOKEN_REQUIRED": "1", "TUNER_API_WORK_DIR": str(tmp_path),
        "TUNER_API_REFRESH_S": "0",
    })
    assert settings.token is not None and settings.token.get_secret_value() == "a" * 20
    assert "a" * 20 not in repr(settings)  # the token never shows in logs
    assert settings.read_token_required and settings.work_dir == tmp_path and settings.refresh_s == 0
    defaults = ApiSettings.from_env("sqlite:///x.db", {"TUNER_API_TOKEN": ""})
    assert defaults.token is None and not defaults.writes_enabled and not defaults.read_token_required


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TUNER_API_READ_TOKEN_REQUIRED": "1"}, "TUNER_API_READ_TOKEN_REQUIRED is set but TUNER_API_TOKEN is not"),
        ({"TUNER_API_READ_TOKEN_REQUIRED": "maybe"}, "TUNER_API_READ_TOKEN_REQUIRED: "),
        ({"TUNER_API_REFRESH_S": "-1"}, "TUNER_API_REFRESH_S: "),
        ({"TUNER_API_STOP_TIMEOUT_S": "soon"}, "TUNER_API_STOP_TIMEOUT_S: "),
        ({"TUNER_API_TOKEN": "x"}, "TUNER_API_TOKEN: at least 16 characters, or anyone may guess it"),
        ({"TUNER_API_TOKEN": "a" * 15}, "TUNER_API_TOKEN: at least 16 characters"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ApiSettings.from_env("sqlite:///x.db", environ)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StudyNotFoundError("no study"), 404),
        (NoRecommendationError("none within"), 404),
        (ConflictError("exists"), 409),
        (ConfigError("study file: x"), 400),
        (StorageError("down"), 503),
        (OperationalError("SELECT 1", {}, Exception("gone")), 503),
        (MeasurementError("odd"), 500),
        (RuntimeError("bug"), 500),
    ],
)
def test_each_error_has_one_status(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_a_request_waits_for_a_database_that_does_not_answer_only_storage_wait_s(
    fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ApiSettings.from_env(fresh_postgres_url, {"TUNER_API_STORAGE_WAIT_S": "2", "TUNER_API_REFRESH_S": "0"})
    database = sa.make_url(fresh_postgres_url).database
    admin = sa.create_engine(fresh_postgres_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert client.get("/studies").status_code == 200
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                             {"d": database})
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="api.errors"):
                answer = client.get("/studies")
            waited = time.monotonic() - started
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            admin.dispose()
        assert answer.status_code == 503 and "did not answer for 2 s" in answer.json()["detail"], answer.text
        assert waited < 30, waited  # the driver's own wait is 120 s
        # the API's log says it in one line, not a traceback per request (a poll during an outage repeats it)
        logged = [r for r in caplog.records if r.name == "api.errors"]
        assert len(logged) == 1 and logged[0].exc_info is None and "\n" not in logged[0].getMessage(), logged
        assert "GET /studies answered 503" in logged[0].getMessage()
        assert client.get("/studies").status_code == 200  # and it answers again once the database does
