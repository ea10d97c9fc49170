"""Alembic migrations of the tuner's own tables (``tuner_trial_configs``, ``tuner_trial_points``).

Optuna migrates its own tables and records their version in ``alembic_version``; the tuner keeps
its version in ``tuner_alembic_version`` so the two never meet. ``upgrade`` runs at every
``Store`` open: a database already at the head costs one read; otherwise the upgrade runs in one
transaction that holds a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so a
tuner, an API and a dashboard opening a fresh database at once migrate it exactly once.

A database whose tables were made before migrations existed (by ``metadata.create_all``) is
stamped at the first revision, which is that schema, and upgraded from there.

To add a revision, change ``tuner.storage._store``'s tables, then let Alembic write the script:

    alembic -c tuner/storage/migrations/alembic.ini -x url=sqlite:///scratch.db upgrade head
    alembic -c tuner/storage/migrations/alembic.ini -x url=sqlite:///scratch.db revision --autogenerate -m "what"
    alembic -c tuner/storage/migrations/alembic.ini -x url=sqlite:///scratch.db check    # nothing left to write

``tests/test_migrations.py`` fails while the tables and the migrations disagree.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

VERSION_TABLE = "tuner_alembic_version"
#: The revision that is the schema ``metadata.create_all`` made before migrations existed.
BASELINE = "0001"
_LEGACY_TABLE = "tuner_trial_configs"
# pg_advisory_xact_lock key: any constant other programs are unlikely to use ("tune" in ASCII).
_PG_LOCK_KEY = 0x74756E65
# pg_advisory_lock key held while a Store creates Optuna's tables ("tabl"); not _PG_LOCK_KEY, which
# ``upgrade`` takes from another connection while this one is held.
_PG_CREATE_LOCK_KEY = 0x7461626C

FOLDER = Path(__file__).resolve().parent


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for this folder, bound to ``connection`` where given."""
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0]


def current(connection: sa.Connection) -> str | None:
    """The revision the database is at, or None where the tuner's tables were never migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Brings the tuner's tables in ``engine``'s database to the newest revision.

    Args:
        engine: An engine on the database (its URL and connect arguments are reused).
    """
    with engine.connect() as conn:
        at = current(conn)
    if at == head():
        return
    private = _locking_engine(engine)
    try:
        with private.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            config = alembic_config(conn)
            # Read again under the lock: another process may have migrated meanwhile.
            if current(conn) is None and sa.inspect(conn).has_table(_LEGACY_TABLE):
                logger.info("stamping the tuner's tables made before migrations at revision %s", BASELINE)
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
    finally:
        if private is not engine:
            private.dispose()


@contextlib.contextmanager
def creating(url: str) -> Iterator[None]:
    """Holds a lock on a PostgreSQL database while the block creates tables (none on SQLite).

    Optuna creates its tables and enum types with ``create_all``, which checks and then creates
    without a lock: two processes opening an empty database at once (two drivers, a driver and the
    API) collided on ``CREATE TYPE studydirection``. SQLite serializes writers by itself.
    """
    if sa.make_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_CREATE_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_CREATE_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()


def _locking_engine(engine: sa.Engine) -> sa.Engine:
    """An engine whose transactions lock the database for writing from the start (SQLite files)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return engine  # PostgreSQL locks with an advisory lock; an in-memory database has one user
    private = sa.create_engine(engine.url, connect_args={"timeout": 30})

    # pysqlite neither begins a transaction before DDL nor takes the write lock up front;
    # BEGIN IMMEDIATE makes the whole upgrade one transaction that waits for other writers.
    @sa.event.listens_for(private, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(private, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return private
