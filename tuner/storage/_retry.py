"""Riding out database outages: a PostgreSQL restart or a dropped connection must not end a study.

    retrier = Retrier(budget_s=120)
    retrier.call(store_rows)                      # retried while the database does not answer
    storage = RetryingRDBStorage(url, engine_kwargs, retrier)   # Optuna's storage, every call retried

An error is transient when SQLAlchemy reports the connection (``OperationalError``,
``InterfaceError``, any DBAPI error that invalidated its connection, or ``PendingRollbackError``: a
session used again after its connection dropped, as Optuna's fallback query in ``_get_trials``
does), including where Optuna wrapped it in ``StorageInternalError``. Anything else (a bad value,
a constraint) is raised at once.
One warning is logged when an outage starts and one line when the database answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from sqlalchemy import exc as sa_exc

from tuner.errors import StorageError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Optuna storage calls the study driver makes (directly or through Optuna's cache), all retried.
_OPTUNA_CALLS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "_create_new_trial",
    "_set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "_get_best_trial_id",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "_get_trials",
    "get_trial_param",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "record_heartbeat",
)


def is_transient(exc: BaseException) -> bool:
    """True where the error (or one it was raised from) says the database could not be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.PendingRollbackError)):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__
    return False


class Retrier:
    """Calls a function again, with growing pauses, while the database does not answer.

    Args:
        budget_s: How long one call may keep retrying before StorageError; 0 retries nothing.
        max_pause_s: The longest pause between two tries.
        sleep: Waits that many seconds (tests pass a fake clock's).
    """

    def __init__(
        self, budget_s: float = 120.0, max_pause_s: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.budget_s = budget_s
        self.max_pause_s = max_pause_s
        self.sleep = sleep
        self._lock = threading.Lock()
        self._outage_since: float | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, tried again through a transient outage of up to ``budget_s``.

        Raises:
            StorageError: the database did not answer within the budget.
        """
        started = time.monotonic()
        pause = 0.25
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self.budget_s:
                    raise StorageError(
                        f"the study storage did not answer for {waited:.0f} s: {_first_line(exc)}"
                    ) from exc
                self._note_outage(exc)
                self.sleep(min(pause, self.budget_s - waited))
                pause = min(pause * 2, self.max_pause_s)
                continue
            self._note_recovery()
            return result

    def _note_outage(self, exc: BaseException) -> None:
        with self._lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        logger.warning(
            "the study storage does not answer (%s); retrying for up to %.0f s", _first_line(exc), self.budget_s
        )

    def _note_recovery(self) -> None:
        if self._outage_since is None:  # the common case: no lock taken
            return
        with self._lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            logger.warning("the study storage answers again after %.0f s", time.monotonic() - since)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc.__cause__ or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls ride out database outages (see ``Retrier``).

    Args:
        url: The SQLAlchemy URL.
        engine_kwargs: Passed to SQLAlchemy's ``create_engine``.
        retrier: Shared with the tuner's own tables, so one outage logs once.
    """

    def __init__(self, url: str, engine_kwargs: dict[str, Any], retrier: Retrier) -> None:
        self._retrier = retrier
        super().__init__(url, engine_kwargs=engine_kwargs)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(optuna.storages.RDBStorage, name)

    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrier.call(method, self, *args, **kwargs)

    call.__name__ = name
    call.__doc__ = method.__doc__
    return call


for _name in _OPTUNA_CALLS:
    setattr(RetryingRDBStorage, _name, _retried(_name))
