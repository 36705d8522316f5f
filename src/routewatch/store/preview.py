"""What ``run`` would do with each slot, read from the store without writing: ``run --dry-run``.

It follows ``runner`` and ``store.runs.claim_run``: a route's interrupted run is resumed
first when no ``--at`` is given; a completed slot is skipped; a slot another process
holds is left to it; a slot started on another eval-set version or route config is not
resumed; anything else replays the calls not yet stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from routewatch.config import Route
from routewatch.evalset import EvalSet
from routewatch.store.runs import ClaimOutcome, owner_alive, route_config_hash
from routewatch.store.tables import (
    EvalSetRow,
    ResultRow,
    RouteSnapshotRow,
    RunRow,
    RunStatus,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotPreview:
    """What a run of one route and eval set would do now."""

    outcome: ClaimOutcome
    """``started`` for a new run, ``resumed``, or why nothing would be replayed."""
    run_id: int | None = None
    """The stored run it would resume or that holds the slot."""
    slot_key: str
    stored: int = 0
    """Calls of that run already stored (not replayed again): each (item, sample) of the
    eval set and ``samples`` as they are now with a result."""
    holder: str | None = None
    """The process running the slot, when ``busy``."""
    cost_per_call: float | None = None
    """Route and judge cost per call of the newest completed run of this route and eval
    set; None before the first one."""
    cancels: tuple[int, ...] = ()
    """Interrupted runs of another eval-set version or route config, which the run marks
    ``cancelled`` (only without ``--at``)."""


def preview_slot(
    engine: Engine,
    *,
    route_name: str,
    route: Route,
    evalset: EvalSet,
    slot_key: str,
    resume_unfinished: bool,
    now: datetime,
) -> SlotPreview:
    """What ``run`` would do with ``slot_key`` of ``route_name`` x ``evalset`` now."""
    with engine.connect() as conn:
        eval_set_id = conn.execute(
            select(EvalSetRow.id).where(
                EvalSetRow.name == evalset.name, EvalSetRow.version == evalset.version
            )
        ).scalar()
        snapshot_id = conn.execute(
            select(RouteSnapshotRow.id).where(
                RouteSnapshotRow.route == route_name,
                RouteSnapshotRow.config_hash == route_config_hash(route),
            )
        ).scalar()
        cost = _cost_per_call(conn, route_name, evalset.name)
        same = (eval_set_id, snapshot_id)
        row = None
        cancels: list[int] = []
        if resume_unfinished:
            # As find_unfinished_run: the newest interrupted run of this version and
            # config is resumed; those of another are cancelled.
            for r in _runs(conn, route_name, evalset.name, status=RunStatus.running):
                if owner_alive(r.owner, r.heartbeat_at, now):
                    continue
                if (r.eval_set_id, r.route_snapshot_id) != same or None in same:
                    cancels.append(r.id)
                elif row is None:
                    row = r
        if row is None:
            row = next(iter(_runs(conn, route_name, evalset.name, slot_key=slot_key)), None)
        if row is None:
            return SlotPreview(
                outcome=ClaimOutcome.started,
                slot_key=slot_key,
                cost_per_call=cost,
                cancels=tuple(cancels),
            )
        found: dict[str, Any] = {
            "run_id": row.id,
            "slot_key": row.slot_key,
            "cost_per_call": cost,
            "cancels": tuple(cancels),
        }
        if row.status == RunStatus.completed:
            return SlotPreview(outcome=ClaimOutcome.completed, **found)
        if row.status == RunStatus.running and owner_alive(row.owner, row.heartbeat_at, now):
            return SlotPreview(outcome=ClaimOutcome.busy, holder=row.owner, **found)
        if row.eval_set_id != eval_set_id:
            return SlotPreview(outcome=ClaimOutcome.version_changed, **found)
        if row.route_snapshot_id != snapshot_id:
            return SlotPreview(outcome=ClaimOutcome.config_changed, **found)
        # As the runner does: what is left is each (item, sample) of the set as it is
        # now without a result; results of items or samples since dropped do not count.
        wanted = {(item.id, n) for item in evalset.items for n in range(route.samples)}
        pairs = conn.execute(
            select(ResultRow.item_id, ResultRow.sample).where(ResultRow.run_id == row.id)
        )
        stored = len({(r.item_id, r.sample) for r in pairs} & wanted)
        return SlotPreview(outcome=ClaimOutcome.resumed, stored=stored, **found)


def _runs(
    conn: Connection,
    route: str,
    eval_set_name: str,
    *,
    status: RunStatus | None = None,
    slot_key: str | None = None,
) -> list[Any]:
    """The route's runs of the eval set, newest first, of ``status`` or ``slot_key``."""
    query = select(
        RunRow.id,
        RunRow.slot_key,
        RunRow.status,
        RunRow.owner,
        RunRow.heartbeat_at,
        RunRow.eval_set_id,
        RunRow.route_snapshot_id,
    ).where(RunRow.route == route, RunRow.eval_set_name == eval_set_name)
    if status is not None:
        query = query.where(RunRow.status == status)
    if slot_key is not None:
        query = query.where(RunRow.slot_key == slot_key)
    return list(conn.execute(query.order_by(RunRow.at.desc())))


def _cost_per_call(conn: Connection, route: str, eval_set_name: str) -> float | None:
    """What a call cost, judge included, in the newest completed run with answers."""
    row = conn.execute(
        select(RunRow.cost_usd, RunRow.judge_cost_usd, RunRow.results_total)
        .where(
            RunRow.route == route,
            RunRow.eval_set_name == eval_set_name,
            RunRow.status == RunStatus.completed,
            # A run whose every call failed measured no price.
            RunRow.results_total > func.coalesce(RunRow.errors_total, 0),
        )
        .order_by(RunRow.at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    total: float = (row.cost_usd or 0.0) + (row.judge_cost_usd or 0.0)
    return total / int(row.results_total)
