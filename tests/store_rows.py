"""Rows as the runner and detection leave them, written straight into a test's database.

For tests of what reads the store (the HTTP surface, the CLI's policy commands) without
replaying anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert

from routewatch.store.tables import (
    EvalSetRow,
    IncidentRow,
    IncidentStatus,
    RouteSnapshotRow,
    RunRow,
    RunStatus,
)


def add_run(engine: Engine, route: str, at: datetime, **totals: Any) -> None:
    """A run row as the runner leaves it; completed unless ``status`` says otherwise."""
    tag = f"{route}{at:%j%H%M}"
    with engine.begin() as conn:
        eval_set = conn.execute(
            insert(EvalSetRow)
            .values(
                name="faq",
                version=tag,
                scale_min=1,
                scale_max=5,
                pass_threshold=0.7,
                definition={},
            )
            .returning(EvalSetRow.id)
        ).scalar_one()
        snapshot = conn.execute(
            insert(RouteSnapshotRow)
            .values(route=route, provider="p", model="m", params={}, config_hash=tag)
            .returning(RouteSnapshotRow.id)
        ).scalar_one()
        conn.execute(
            insert(RunRow).values(
                route=route,
                route_snapshot_id=snapshot,
                eval_set_id=eval_set,
                eval_set_name="faq",
                slot_key=f"{route}/faq/{at.isoformat()}",
                at=at,
                started_at=at,
                **{"status": RunStatus.completed, "results_total": 6, "errors_total": 0, **totals},
            )
        )


def open_incident(engine: Engine, route: str, opened_at: datetime) -> int:
    """An open score incident of ``route``, opened by its first run; its id."""
    with engine.begin() as conn:
        run = conn.execute(RunRow.__table__.select().where(RunRow.route == route)).first()
        assert run is not None
        return conn.execute(
            insert(IncidentRow)
            .values(
                route=route,
                eval_set_name="faq",
                metric="score",
                detector="sigma",
                status=IncidentStatus.open,
                opened_at=opened_at,
                opening_run_id=run.id,
                observed=0.5,
                severity="page",
                detail={},
            )
            .returning(IncidentRow.id)
        ).scalar_one()
