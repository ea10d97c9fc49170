"""Step configs: the config.pbtxt of each composing model an ensemble's trial ran.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tuner_trial_configs", sa.Column("step_configs_json", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tuner_trial_configs") as batch:
        batch.drop_column("step_configs_json")
