"""Add runs.p50_ttft_ms and runs.p95_ttft_ms: time to first token of a streamed route's calls.

Runs stored before this revision get them from their results (streamed calls that
answered); a route that does not stream keeps them null.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 15:30:00
"""

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
"""Results fetched, and runs updated, at a time."""


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
    # Streamed in run order and written in batches: a store can hold tens of millions of
    # results, and only one run's times to first token are in memory at a time. The runs
    # are read first, not joined: SQLite must not scan a table this connection updates.
    completed = set(
        conn.execute(sa.select(runs.c.id).where(runs.c.status == "completed")).scalars()
    )
    rows = conn.execute(
        sa.select(results.c.run_id, results.c.ttft_ms)
        .where(results.c.ttft_ms.is_not(None), results.c.error_class.is_(None))
        .order_by(results.c.run_id)
        .execution_options(yield_per=BATCH)
    )
    batch: list[dict[str, Any]] = []
    fill = (
        sa.update(runs)
        .where(runs.c.id == sa.bindparam("run"))
        .values(p50_ttft_ms=sa.bindparam("p50"), p95_ttft_ms=sa.bindparam("p95"))
    )
    for run_id, found in groupby(rows, key=itemgetter(0)):
        if run_id not in completed:
            continue
        values = sorted(ttft for _, ttft in found)
        batch.append(
            {"run": run_id, "p50": _percentile(values, 50), "p95": _percentile(values, 95)}
        )
        if len(batch) >= BATCH:
            conn.execute(fill, batch)
            batch = []
    if batch:
        conn.execute(fill, batch)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("p95_ttft_ms")
        batch_op.drop_column("p50_ttft_ms")
