"""Incidents by hand: resolve one that no run will, shared by the CLI and the daemon.

Runs resolve an incident after ``recover_runs`` healthy runs. Some never get them: the
route was taken out of the config, or the drop was accepted or fixed elsewhere and
nobody wants to wait. ``resolve_by_hand`` closes such an incident in one transaction
with its ``incident.resolved`` event and the route's policies brought up to date, as a
resolving run would. If the route is still below its baseline, its next run opens a new
incident: resolving is not silencing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from routewatch.config import Config
from routewatch.errors import UsageError
from routewatch.store.detection import apply_policies
from routewatch.store.outbox import enqueue
from routewatch.store.policies import policies_mentioning, policies_of
from routewatch.store.queries import IncidentFacts, incident_facts
from routewatch.store.tables import IncidentRow, IncidentStatus

MAX_REASON_CHARS = 500
"""The longest reason kept: it goes into every alert of the resolution."""
MAX_INCIDENT_ID = 2**31 - 1
"""The largest id an incident can have (PostgreSQL's ``integer``); larger ones name none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandResolution:
    """What ``resolve_by_hand`` did."""

    incident: IncidentFacts
    """The incident as it is now."""
    changed: bool
    """False when it was resolved already (by a run or by hand): nothing was written."""
    policy_actions: tuple[dict[str, Any], ...] = ()
    """What each policy of the route did, as incident events carry it."""
    events: int = 0
    """Outbox messages written."""


def unknown_incidents(engine: Engine, incident_ids: Sequence[int]) -> list[int]:
    """Those of ``incident_ids`` that name no incident, in their order."""
    wanted = [n for n in dict.fromkeys(incident_ids) if 1 <= n <= MAX_INCIDENT_ID]
    with engine.connect() as conn:
        found = set(
            conn.execute(select(IncidentRow.id).where(IncidentRow.id.in_(wanted))).scalars()
        )
    return [n for n in dict.fromkeys(incident_ids) if n not in found]


def resolve_by_hand(
    engine: Engine,
    config: Config,
    incident_id: int,
    *,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> HandResolution:
    """Resolve incident ``incident_id`` now, unless it is resolved already.

    Args:
        engine: The database.
        config: The configuration: its alert targets get ``incident.resolved`` and its
            policies that hold the route are reconciled (a demoted route comes back
            once it has no other open incident).
        incident_id: The incident.
        actor: Who resolves it: ``cli`` or ``api``, recorded with it and in the events.
        reason: Why, in words; kept with the incident and sent in the event.
        now: When; the clock by default. Never before the incident opened.

    Raises:
        UsageError: there is no such incident, or the reason is too long.
    """
    (done,) = resolve_all_by_hand(
        engine, config, [incident_id], actor=actor, reason=reason, now=now
    )
    return done


def resolve_all_by_hand(
    engine: Engine,
    config: Config,
    incident_ids: Sequence[int],
    *,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> list[HandResolution]:
    """``resolve_by_hand`` for each of ``incident_ids`` (each once), in one transaction.

    All or none: an unknown ID, or a database error part-way, resolves none of them.

    Raises:
        UsageError: an ID names no incident, or the reason is too long.
    """
    reason = " ".join(reason.split()) if reason else None
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"the reason is {len(reason)} characters; at most {MAX_REASON_CHARS}")
    with engine.begin() as conn:
        return [
            _resolve(conn, config, n, actor=actor, reason=reason, now=now)
            for n in dict.fromkeys(incident_ids)
        ]


def _resolve(
    conn: Connection,
    config: Config,
    incident_id: int,
    *,
    actor: str,
    reason: str | None,
    now: datetime | None,
) -> HandResolution:
    """Resolve one incident in the caller's transaction."""
    missing = UsageError(f"no incident #{incident_id}; `routewatch incidents --all` lists them")
    if not 1 <= incident_id <= MAX_INCIDENT_ID:
        raise missing
    row = conn.execute(select(IncidentRow.__table__).where(IncidentRow.id == incident_id)).first()
    if row is None:
        raise missing
    if row.status != IncidentStatus.open:
        return HandResolution(incident=incident_facts(row), changed=False)
    clock = now or datetime.now(UTC)
    # Never before it opened, though a run's logical time may be a little ahead.
    at = max(clock, row.opened_at)
    resolution = {"by": actor, "reason": reason, "at": at.isoformat()}
    done = conn.execute(
        update(IncidentRow)
        .where(IncidentRow.id == incident_id, IncidentRow.status == IncidentStatus.open)
        .values(
            status=IncidentStatus.resolved,
            resolved_at=at,
            detail={**(row.detail or {}), "resolution": resolution},
        )
    )
    if done.rowcount == 0:
        # A run resolved it between the read and the write.
        row = conn.execute(select(IncidentRow.__table__).where(IncidentRow.id == incident_id)).one()
        return HandResolution(incident=incident_facts(row), changed=False)
    targets = config.alerts.targets()
    deferred: list[tuple[dict[str, Any], list[str]]] = []
    own = policies_of(row.route, config.policies)
    actions = apply_policies(
        conn,
        row.route,
        config.policies,
        targets,
        deferred,
        incident_id=incident_id,
        now=at,
        run_id=None,
        actor=actor,
        names=own,
    )
    # A route taken out of a policy's chain may still be in its file, demoted: the
    # version that drops it says why, and owes nothing to this incident.
    others = [n for n in policies_mentioning(conn, row.route, config.policies) if n not in own]
    if others:
        actions += apply_policies(
            conn,
            row.route,
            config.policies,
            targets,
            deferred,
            incident_id=None,
            now=at,
            run_id=None,
            actor=actor,
            reason=f"{row.route} is no longer in the configured chain",
            names=others,
        )
    body = {
        "event": "incident.resolved",
        "id": str(uuid.uuid4()),
        "at": at.isoformat(),
        "route": row.route,
        "eval_set": row.eval_set_name,
        "incident_id": incident_id,
        "metric": row.metric,
        "observed": None,
        "baseline_mean": None,
        "baseline_sd": None,
        "threshold": None,
        "detector": row.detector,
        "p_value": None,
        "run_id": None,
        "worst_items": [],
        "resolved_by": actor,
        "reason": reason,
        "policy_actions": actions,
    }
    # Due now: a resolution dated ahead, to its incident's opening, is news at once.
    events = enqueue(conn, body, targets, clock)
    for deferred_body, to in deferred:
        events += enqueue(conn, deferred_body, to, clock)
    row = conn.execute(select(IncidentRow.__table__).where(IncidentRow.id == incident_id)).one()
    return HandResolution(
        incident=incident_facts(row), changed=True, policy_actions=tuple(actions), events=events
    )
