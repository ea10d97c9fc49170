"""Alembic's entry point: runs the migrations on the connection ``tuner.storage.migrations`` hands it.

From the ``alembic`` command line (to write a new revision), the URL comes from ``-x url=...``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from tuner.storage._store import metadata
from tuner.storage.migrations import VERSION_TABLE


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        include_name=lambda name, type_, _parent: type_ != "table" or (name or "").startswith("tuner_"),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database: alembic -c tuner/storage/migrations/alembic.ini -x url=URL ...")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
