"""Add pairwise_preferences: the judge's choice between an item's output and its baseline's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-15 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pairwise_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_hash", sa.String(length=16), nullable=False),
        sa.Column("item_id", sa.String(length=200), nullable=False),
        sa.Column("baseline_run_id", sa.Integer(), nullable=True),
        sa.Column("today_score", sa.Double(), nullable=False),
        sa.Column("baseline_score", sa.Double(), nullable=False),
        sa.Column("judge", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("preference", sa.String(length=16), nullable=True),
        sa.Column("baseline_first", sa.String(length=16), nullable=True),
        sa.Column("today_first", sa.String(length=16), nullable=True),
        sa.Column("baseline_first_answer", sa.Text(), nullable=True),
        sa.Column("today_first_answer", sa.Text(), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("calls", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokens_in", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tokens_out", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cost_usd", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "preference IN ('baseline', 'today', 'tie')",
            name=op.f("ck_pairwise_preferences_preference"),
        ),
        sa.ForeignKeyConstraint(
            ["baseline_run_id"],
            ["runs.id"],
            name=op.f("fk_pairwise_preferences_baseline_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_pairwise_preferences_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairwise_preferences")),
        sa.UniqueConstraint(
            "run_id", "item_hash", name=op.f("uq_pairwise_preferences_run_id_item_hash")
        ),
    )


def downgrade() -> None:
    op.drop_table("pairwise_preferences")
