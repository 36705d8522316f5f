"""Add judge_spend.budget_alerted: the judge.budget event goes out once per judge and day.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("judge_spend", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("budget_alerted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("judge_spend", schema=None) as batch_op:
        batch_op.drop_column("budget_alerted")
