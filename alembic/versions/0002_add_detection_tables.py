"""Add detection: per-item outcomes, per-run detection results, incident hysteresis.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:25:54.897778
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detections",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("eval_set_name", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("baseline_runs", sa.Integer(), nullable=False),
        sa.Column("paired_items", sa.Integer(), nullable=False),
        sa.Column("observed", sa.Double(), nullable=True),
        sa.Column("baseline_mean", sa.Double(), nullable=True),
        sa.Column("baseline_sd", sa.Double(), nullable=True),
        sa.Column("lower_limit", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("cusum", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("in_incident", sa.JSON(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_detections_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_detections")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detections_route_eval_set_name_at", ["route", "eval_set_name", "at"], unique=False
        )

    op.create_table(
        "item_outcomes",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_hash", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("samples_scored", sa.Integer(), nullable=False),
        sa.Column("samples_passed", sa.Integer(), nullable=False),
        sa.Column("samples_errored", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_item_outcomes_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "item_hash", name=op.f("pk_item_outcomes")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("healthy_streak", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("last_run_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_incidents_last_run_id_runs"), "runs", ["last_run_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_incidents_last_run_id_runs"), type_="foreignkey")
        batch_op.drop_column("last_run_id")
        batch_op.drop_column("healthy_streak")

    op.drop_table("item_outcomes")
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_route_eval_set_name_at")

    op.drop_table("detections")
