"""Study storage: Optuna's RDBStorage plus the tuner's own tables, in one database.

Optuna's tables hold studies, trials, params, values and constraints. The tuner's own tables
hold what Optuna has no place for:

    tuner_trial_configs   one row per trial: the config.pbtxt text, the spec, the error, timings
    tuner_trial_points    one row per trial and concurrency: throughput, percentiles, breakdown
    tuner_study_leases    one row per study being run: which driver runs it (see tuner.storage._lease)

Rows are keyed by Optuna's ``trial_id``, which is unique across the whole storage. The tables
are created and upgraded by the Alembic migrations in ``tuner.storage.migrations`` when a Store opens;
change a table here and add a revision there (``tests/test_migrations.py`` checks they agree).

Every call to the database rides out a transient outage (a PostgreSQL restart) for up to
``outage_s`` seconds (see tuner.storage._retry).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from tuner.errors import StorageError, StudyNotFoundError
from tuner.storage import migrations
from tuner.storage._retry import Retrier, RetryingRDBStorage
from tuner.trial import LoadPoint, TrialOutcome

logger = logging.getLogger(__name__)

metadata = sa.MetaData()


trial_configs = sa.Table(
    "tuner_trial_configs",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("config_pbtxt", sa.Text, nullable=False),
    sa.Column("spec_json", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("timings_json", sa.Text, nullable=False, default="{}"),
    # an ensemble's trial: each composing model's config.pbtxt by name (migration 0004)
    sa.Column("step_configs_json", sa.Text, nullable=True),
)

#: LoadPoint fields with a column of their own (migration 0001); any other field goes to extra_json.
_POINT_COLUMNS = (
    "concurrency",
    "throughput",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "client_send_ms",
    "client_recv_ms",
    "server_queue_ms",
    "server_compute_input_ms",
    "server_compute_infer_ms",
    "server_compute_output_ms",
    "stable",
)

trial_points = sa.Table(
    "tuner_trial_points",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trial_id", sa.Integer, nullable=False, index=True),
    sa.Column("study_name", sa.String(512), nullable=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    *[
        sa.Column(name, sa.Boolean if name == "stable" else sa.Integer if name == "concurrency" else sa.Float)
        for name in _POINT_COLUMNS
    ],
    sa.Column("extra_json", sa.Text),
    sa.Index("ix_tuner_trial_points_study", "study_name", "throughput"),
)

#: Times are seconds since the epoch on the driver's clock; a lease is stale when its heartbeat
#: is older than the TTL on the reader's clock (hosts' clocks agree far better than the TTL).
study_leases = sa.Table(
    "tuner_study_leases",
    metadata,
    sa.Column("study_name", sa.String(512), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class TrialRecord:
    """What the tuner's own tables hold for one trial."""

    config_pbtxt: str
    spec: dict[str, Any]
    error: str | None
    timings_s: dict[str, float]
    points: tuple[LoadPoint, ...]
    step_configs: dict[str, str] = field(default_factory=dict)


class Store:
    """One database: Optuna's storage and the tuner's tables.

    Args:
        url: A SQLAlchemy URL (``sqlite:///tuner.db``, ``postgresql+psycopg://...``).
        must_exist: Refuse a SQLite file that does not exist yet (for read-only commands).
        outage_s: How long a call retries while the database does not answer.
    """

    def __init__(self, url: str, must_exist: bool = False, outage_s: float = 120.0) -> None:
        self.url = url
        self.retrier = Retrier(outage_s)
        if must_exist and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise StudyNotFoundError(f"no study database at {url}")  # a wrong path: the user's input
        try:
            with migrations.creating(url):
                self.optuna = RetryingRDBStorage(url, _engine_kwargs(url), self.retrier)
            self.engine = sa.create_engine(url, **_engine_kwargs(url))
            migrations.upgrade(self.engine)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise StorageError(f"cannot open storage {redact_url(url)}: {exc}") from exc

    def save_outcome(self, study_name: str, trial_id: int, trial_number: int, outcome: TrialOutcome) -> None:
        """Writes a trial's config, spec, error, timings and measured points."""
        self.retrier.call(self._save_outcome, study_name, trial_id, trial_number, outcome)

    def _save_outcome(self, study_name: str, trial_id: int, trial_number: int, outcome: TrialOutcome) -> None:
        with self.engine.begin() as conn:
            conn.execute(trial_points.delete().where(trial_points.c.trial_id == trial_id))
            conn.execute(trial_configs.delete().where(trial_configs.c.trial_id == trial_id))
            conn.execute(
                trial_configs.insert().values(
                    trial_id=trial_id,
                    study_name=study_name,
                    trial_number=trial_number,
                    config_pbtxt=outcome.config_pbtxt,
                    spec_json=outcome.spec.key(),
                    error=outcome.error,
                    timings_json=json.dumps(outcome.timings_s),
                    step_configs_json=json.dumps(outcome.step_configs) if outcome.step_configs else None,
                )
            )
            rows = [
                {"trial_id": trial_id, "study_name": study_name, "trial_number": trial_number, **_point_row(p)}
                for p in outcome.points
            ]
            if rows:
                conn.execute(trial_points.insert(), rows)

    def records(self, trial_ids: Iterable[int]) -> dict[int, TrialRecord]:
        """The tuner's rows of the given trials, by trial_id (trials without rows are left out)."""
        ids = list(trial_ids)
        if not ids:
            return {}
        return self.retrier.call(self._records, ids)

    def _records(self, ids: list[int]) -> dict[int, TrialRecord]:
        with self.engine.connect() as conn:
            configs = conn.execute(sa.select(trial_configs).where(trial_configs.c.trial_id.in_(ids))).mappings().all()
            points = (
                conn.execute(
                    sa.select(trial_points).where(trial_points.c.trial_id.in_(ids)).order_by(trial_points.c.id)
                )
                .mappings()
                .all()
            )
        by_trial: dict[int, list[LoadPoint]] = {}
        for row in points:
            by_trial.setdefault(row["trial_id"], []).append(_point_from_row(row))
        return {
            row["trial_id"]: TrialRecord(
                config_pbtxt=row["config_pbtxt"],
                spec=json.loads(row["spec_json"]),
                error=row["error"],
                timings_s=json.loads(row["timings_json"] or "{}"),
                points=tuple(by_trial.get(row["trial_id"], ())),
                step_configs=json.loads(row["step_configs_json"] or "{}"),
            )
            for row in configs
        }

    def study_names(self) -> list[str]:
        return [s.study_name for s in self.optuna.get_all_studies()]

    def study_id(self, name: str) -> int:
        """Optuna's id of the study of that name.

        Raises:
            StudyNotFoundError: there is no study of that name.
        """
        try:
            return self.optuna.get_study_id_from_name(name)
        except KeyError:
            raise StudyNotFoundError(f"no study {name!r}") from None

    def delete_study(self, name: str) -> None:
        """Deletes a study: Optuna's rows and the tuner's.

        Raises:
            StudyNotFoundError: there is no study of that name.
        """
        study_id = self.study_id(name)
        self.optuna.delete_study(study_id)
        self.retrier.call(self._delete_rows, name)
        logger.info("deleted study %r", name)

    def _delete_rows(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(trial_points.delete().where(trial_points.c.study_name == name))
            conn.execute(trial_configs.delete().where(trial_configs.c.study_name == name))

    def ping(self) -> None:
        """Raises StorageError where the database does not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(f"storage {redact_url(self.url)} does not answer: {exc}") from exc

    def load_study(self, name: str) -> optuna.Study:
        """Loads a study by name.

        Raises:
            StudyNotFoundError: there is no study of that name in this storage.
        """
        try:
            return optuna.load_study(study_name=name, storage=self.optuna)
        except KeyError:
            known = ", ".join(self.study_names()) or "none"
            raise StudyNotFoundError(f"no study {name!r} in {redact_url(self.url)} (studies: {known})") from None

    def close(self) -> None:
        self.engine.dispose()
        self.optuna.remove_session()


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by ``***`` (for messages and answers)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url


_LOAD_POINT_FIELDS = frozenset(f.name for f in fields(LoadPoint))


def _point_row(point: LoadPoint) -> dict[str, Any]:
    values = point.as_dict()
    row = {name: values.pop(name, None) for name in _POINT_COLUMNS}
    row["extra_json"] = json.dumps(values) if values else None
    return row


def _point_from_row(row: Any) -> LoadPoint:
    values = {name: row[name] for name in _POINT_COLUMNS}
    values.update(json.loads(row["extra_json"] or "{}"))
    # A field LoadPoint no longer has is left out rather than failing the whole read.
    return LoadPoint(**{k: v for k, v in values.items() if k in _LOAD_POINT_FIELDS})


def _engine_kwargs(url: str) -> dict[str, Any]:
    # pool_pre_ping: a connection the database dropped (a restart) is replaced before it is used.
    if url.startswith("sqlite"):
        # The study driver is the only writer; a short busy timeout covers readers (API, dashboard).
        return {"connect_args": {"timeout": 30}, "pool_pre_ping": True}
    # The API answers reads from several threads at once; connections beyond the pool are opened
    # and closed per use, which costs more than the queries.
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
