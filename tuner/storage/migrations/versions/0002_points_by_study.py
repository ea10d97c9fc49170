"""Points: an index by study (reading or deleting a study's points) and a JSON column for new fields.

``extra_json`` holds the fields of a measured point that have no column of their own, so a field
added to ``LoadPoint`` is stored (and read back) before a migration gives it a column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tuner_trial_points") as batch:
        batch.add_column(sa.Column("extra_json", sa.Text))
    op.create_index("ix_tuner_trial_points_study", "tuner_trial_points", ["study_name", "throughput"])


def downgrade() -> None:
    op.drop_index("ix_tuner_trial_points_study", table_name="tuner_trial_points")
    with op.batch_alter_table("tuner_trial_points") as batch:
        batch.drop_column("extra_json")
