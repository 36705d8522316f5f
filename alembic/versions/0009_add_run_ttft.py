"""Add runs.p50_ttft_ms and runs.p95_ttft_ms: time to first token of a streamed route's calls.

Runs stored before this revision get them from their results (streamed calls that
answered); a route that does not stream keeps them null.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), as the runner uses."""
    pos = q / 100 * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("p50_ttft_ms", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("p95_ttft_ms", sa.Double(), nullable=True))
    conn = op.get_bind()
    results = sa.table(
        "results",
        sa.column("run_id", sa.Integer),
        sa.column("ttft_ms", sa.Double),
        sa.column("error_class", sa.String),
    )
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("p50_ttft_ms", sa.Double),
        sa.column("p95_ttft_ms", sa.Double),
    )
    by_run: dict[int, list[float]] = {}
    rows = conn.execute(
        sa.select(results.c.run_id, results.c.ttft_ms)
        .join(runs, runs.c.id == results.c.run_id)
        .where(
            results.c.ttft_ms.is_not(None),
            results.c.error_class.is_(None),
            runs.c.status == "completed",
        )
    )
    for run_id, ttft in rows:
        by_run.setdefault(run_id, []).append(ttft)
    for run_id, values in by_run.items():
        values.sort()
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id)
            .values(p50_ttft_ms=_percentile(values, 50), p95_ttft_ms=_percentile(values, 95))
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("p95_ttft_ms")
        batch_op.drop_column("p50_ttft_ms")
