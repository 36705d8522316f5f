"""Add eval_set_sources: which stored eval-set version a file's exact text loaded as.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_set_sources",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("eval_set_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["eval_set_id"],
            ["eval_sets.id"],
            name=op.f("fk_eval_set_sources_eval_set_id_eval_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_eval_set_sources")),
    )


def downgrade() -> None:
    op.drop_table("eval_set_sources")
