"""Storage calls ride out a database that does not answer, and only that."""

from __future__ import annotations

import logging

import optuna
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from tuner.errors import StorageError
from tuner.storage._retry import Retrier, is_transient


def _refused() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class Flaky:
    """Fails ``failures`` times with ``error``, then answers 42."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def test_an_outage_is_ridden_out_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    pauses: list[float] = []
    flaky = Flaky(4, _refused())
    with caplog.at_level(logging.WARNING, logger="tuner.storage._retry"):
        assert Retrier(budget_s=60, sleep=pauses.append).call(flaky) == 42
    assert flaky.calls == 5
    assert pauses == [0.25, 0.5, 1.0, 2.0]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "does not answer" in messages[0] and "connection refused" in messages[0]
    assert "answers again" in messages[1]


def test_optunas_wrapped_connection_error_is_transient() -> None:
    try:
        try:
            raise _refused()
        except sa_exc.OperationalError as inner:
            raise optuna.exceptions.StorageInternalError("commit failed") from inner
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_transient(wrapped)


def test_other_errors_are_raised_at_once() -> None:
    integrity = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    flaky = Flaky(1, integrity)
    with pytest.raises(sa_exc.IntegrityError):
        Retrier(budget_s=60, sleep=lambda s: None).call(flaky)
    assert flaky.calls == 1
    assert not is_transient(ValueError("x"))


def test_an_outage_longer_than_the_budget_is_a_storage_error() -> None:
    flaky = Flaky(10**6, _refused())
    with pytest.raises(StorageError, match="did not answer for"):
        Retrier(budget_s=0.3, max_pause_s=0.05).call(flaky)
    assert flaky.calls > 2


def test_a_session_used_again_after_its_connection_dropped_is_transient(fresh_postgres_url: str) -> None:
    """Optuna's ``_get_trials`` catches the OperationalError and queries again on the same session,
    which raises PendingRollbackError (no cause, only a context): that is the same outage."""
    engine = sa.create_engine(fresh_postgres_url)
    admin = sa.create_engine(fresh_postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with Session(engine) as session:
            pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sa_exc.OperationalError):
                session.execute(sa.text("SELECT 1"))
            try:
                session.execute(sa.text("SELECT 1"))
            except sa_exc.PendingRollbackError as again:
                try:
                    raise optuna.exceptions.StorageInternalError("commit failed") from again
                except optuna.exceptions.StorageInternalError as wrapped:
                    assert is_transient(wrapped)
            else:
                pytest.fail("the session answered on a dropped connection")
    finally:
        engine.dispose()
        admin.dispose()
