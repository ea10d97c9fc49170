"""Alembic revisions of the tuner's tables, oldest first by ``down_revision``."""
