"""The API's settings and its one table of error statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

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
