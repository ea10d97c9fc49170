"""The tuner's tables as ``metadata.create_all`` made them before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_POINT_FLOATS = (
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
)


def upgrade() -> None:
    op.create_table(
        "tuner_trial_configs",
        sa.Column("trial_id", sa.Integer, primary_key=True),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("config_pbtxt", sa.Text, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("timings_json", sa.Text, nullable=False),
    )
    op.create_index("ix_tuner_trial_configs_study_name", "tuner_trial_configs", ["study_name"])
    op.create_table(
        "tuner_trial_points",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trial_id", sa.Integer, nullable=False),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer),
        *[sa.Column(name, sa.Float) for name in _POINT_FLOATS],
        sa.Column("stable", sa.Boolean),
    )
    op.create_index("ix_tuner_trial_points_trial_id", "tuner_trial_points", ["trial_id"])


def downgrade() -> None:
    op.drop_table("tuner_trial_points")
    op.drop_table("tuner_trial_configs")
