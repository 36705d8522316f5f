"""Add policy_versions.all_degraded; at most one open incident per route, eval set, metric.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("all_degraded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_index(
        "uq_incidents_open_route_eval_set_name_metric",
        "incidents",
        ["route", "eval_set_name", "metric"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_incidents_open_route_eval_set_name_metric", table_name="incidents")
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.drop_column("all_degraded")
