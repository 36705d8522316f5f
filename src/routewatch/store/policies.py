"""Policy versions: the active chains, stored, changed with their events in one transaction.

``reconcile`` is the shell around ``policy.engine.decide_chain``: it reads the open
incidents of a policy's routes and the newest version, and when the decision differs it
writes a new version row, a ``policy.changed`` event for every alert target and one
``policy.publish`` message per publisher, all in the caller's transaction. The decision is
state-based, so a reconcile that did not happen (a crash, a ``judge_suspect`` run) is made
up by the next one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select, text, update

from routewatch.config import Policy
from routewatch.policy.engine import Demotion, PolicyDecision, Trouble, decide_chain, moves_traffic
from routewatch.store.outbox import enqueue
from routewatch.store.tables import (
    IncidentRow,
    IncidentStatus,
    OutboxRow,
    OutboxStatus,
    PolicyVersionRow,
)

PUBLISH_EVENT = "policy.publish"
"""The outbox event of a publisher target; it carries the policy and version only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredVersion:
    """One stored version of a policy."""

    policy: str
    version: int
    chain: tuple[str, ...]
    pins: tuple[str, ...] | None
    demoted: tuple[Demotion, ...]
    actor: str
    reason: str
    incident_id: int | None
    created_at: datetime
    all_degraded: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconciled:
    """What ``reconcile`` found and did."""

    policy: str
    before: tuple[str, ...]
    """The active chain before (the configured chain when no version existed)."""
    decision: PolicyDecision
    version: int | None
    """The new version, or None when nothing changed."""


def publish_targets(name: str, policy: Policy) -> list[str]:
    """Outbox targets of a policy's publishers: ``publish:<policy>:<key>``.

    Keyed by what each publisher writes to (``Publisher.key``), not by its position, so
    editing the list while writes are queued sends none to the wrong place.
    """
    return [f"publish:{name}:{p.key}" for p in policy.publish]


SUPERSEDED = (
    "superseded: the publisher is no longer configured (removed, or its path, url or group changed)"
)
"""``last_error`` of a publish message that ``sync_publishers`` gave up on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishSync:
    """What ``sync_publishers`` did."""

    queued: tuple[str, ...] = ()
    """Targets given the newest version: publishers that never had it."""
    superseded: int = 0
    """Pending messages of publishers no longer configured, given up."""


def sync_publishers(engine: Engine, policies: Mapping[str, Policy], now: datetime) -> PublishSync:
    """Bring the outbox in line with the configured publishers, for a process starting.

    A publisher added to a policy, or whose path, URL or group changed (a new ``key``),
    has no message for the policy's stored version: without one it would be written only
    at the policy's next change. A message still pending for a publisher that is no longer
    configured could never be delivered: it would fail for ``give_up_hours`` and raise a
    ``policy.publish_failed`` alert about a file nobody uses. Only this configuration's
    policies are touched (another project may share the database).
    """
    wanted = {t: name for name, p in policies.items() for t in publish_targets(name, p)}
    queued: list[str] = []
    with engine.begin() as conn:
        newest = dict(
            conn.execute(
                select(OutboxRow.target, func.max(OutboxRow.id))
                .where(
                    OutboxRow.event == PUBLISH_EVENT,
                    OutboxRow.target.in_(list(wanted)),
                    # Given up here before (moved away, then back): it was never written.
                    or_(OutboxRow.last_error.is_(None), OutboxRow.last_error != SUPERSEDED),
                )
                .group_by(OutboxRow.target)
            ).all()
        )
        sent = {
            target: payload.get("version")
            for target, payload in conn.execute(
                select(OutboxRow.target, OutboxRow.payload).where(
                    OutboxRow.id.in_(list(newest.values()))
                )
            ).all()
        }
        for name, policy in policies.items():
            latest = latest_version(conn, name)
            if latest is None:
                continue  # published with its first version
            for target in publish_targets(name, policy):
                version = sent.get(target)
                if not isinstance(version, int) or version < latest.version:
                    body = {"event": PUBLISH_EVENT, "policy": name, "version": latest.version}
                    enqueue(conn, body, [target], now)
                    queued.append(target)
        stale = [
            row.id
            for row in conn.execute(
                select(OutboxRow.id, OutboxRow.target).where(
                    OutboxRow.event == PUBLISH_EVENT, OutboxRow.status == OutboxStatus.pending
                )
            ).all()
            if row.target not in wanted
            and row.target.removeprefix("publish:").rpartition(":")[0] in policies
        ]
        if stale:
            conn.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(stale), OutboxRow.status == OutboxStatus.pending)
                .values(status=OutboxStatus.dead, last_error=SUPERSEDED, next_attempt_at=now)
            )
    return PublishSync(queued=tuple(queued), superseded=len(stale))


def unpublished(engine: Engine, name: str, policy: Policy) -> dict[str, str | None]:
    """``policy``'s publish targets whose newest message is not delivered, with its last error.

    A target that never had a message is left out: ``sync_publishers`` queues one.
    """
    targets = publish_targets(name, policy)
    with engine.connect() as conn:
        newest = (
            select(func.max(OutboxRow.id))
            .where(OutboxRow.event == PUBLISH_EVENT, OutboxRow.target.in_(targets))
            .group_by(OutboxRow.target)
        )
        rows = conn.execute(
            select(OutboxRow.target, OutboxRow.status, OutboxRow.last_error).where(
                OutboxRow.id.in_(newest)
            )
        ).all()
    return {
        row.target: row.last_error for row in rows if row.status != OutboxStatus.delivered.value
    }


def retry_publishers(engine: Engine, name: str, policy: Policy, now: datetime) -> int:
    """Make ``policy``'s undelivered publishes due now, for a change by hand; how many.

    A pending message is due at once instead of after its backoff; one given up on gets
    a new message for the newest version. One that a dispatcher holds right now may then
    be published twice at once: harmless, as each publish writes the newest version (a
    lease and a backoff are told apart by nothing stored, and an attempt that was never
    recorded, a kill mid-send, would otherwise make the message look held for good).
    """
    failing = unpublished(engine, name, policy)
    if not failing:
        return 0
    with engine.begin() as conn:
        latest = latest_version(conn, name)
        newest = (
            select(func.max(OutboxRow.id))
            .where(OutboxRow.event == PUBLISH_EVENT, OutboxRow.target.in_(list(failing)))
            .group_by(OutboxRow.target)
        )
        rows = conn.execute(
            select(OutboxRow.id, OutboxRow.target, OutboxRow.status).where(OutboxRow.id.in_(newest))
        ).all()
        for row in rows:
            if row.status == OutboxStatus.pending.value:
                conn.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id, OutboxRow.status == OutboxStatus.pending)
                    .values(next_attempt_at=now)
                )
            elif latest is not None:
                body = {"event": PUBLISH_EVENT, "policy": name, "version": latest.version}
                enqueue(conn, body, [row.target], now)
    return len(rows)


def _version(row: Any) -> StoredVersion:
    return StoredVersion(
        policy=row.policy,
        version=row.version,
        chain=tuple(row.chain),
        pins=None if row.pins is None else tuple(row.pins),
        demoted=tuple(
            Demotion(
                route=d["route"],
                since=datetime.fromisoformat(d["since"]),
                reason=d["reason"],
                incident_id=d.get("incident_id"),
            )
            for d in row.demoted
        ),
        actor=row.actor,
        reason=row.reason,
        incident_id=row.incident_id,
        created_at=row.created_at,
        all_degraded=row.all_degraded,
    )


def latest_version(
    conn: Connection, policy: str, *, version: int | None = None
) -> StoredVersion | None:
    """The newest version of ``policy`` (or its ``version``), if any."""
    query = select(PolicyVersionRow.__table__).where(PolicyVersionRow.policy == policy)
    if version is not None:
        query = query.where(PolicyVersionRow.version == version)
    row = conn.execute(query.order_by(PolicyVersionRow.version.desc()).limit(1)).one_or_none()
    return None if row is None else _version(row)


def version_history(engine: Engine, policy: str, *, limit: int = 20) -> list[StoredVersion]:
    """The newest ``limit`` versions of ``policy``, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(PolicyVersionRow.__table__)
            .where(PolicyVersionRow.policy == policy)
            .order_by(PolicyVersionRow.version.desc())
            .limit(limit)
        ).all()
    return [_version(r) for r in rows]


def troubles(conn: Connection, routes: Sequence[str]) -> list[Trouble]:
    """Open incidents on ``routes`` whose metric moves traffic."""
    rows = conn.execute(
        select(IncidentRow.__table__).where(
            IncidentRow.route.in_(list(routes)), IncidentRow.status == IncidentStatus.open
        )
    ).all()
    return [
        Trouble(
            route=r.route,
            incident_id=r.id,
            metric=r.metric,
            since=r.opened_at,
            drop=_drop(r.metric, r.observed, r.baseline_mean),
        )
        for r in rows
        if moves_traffic(r.metric)
    ]


def _drop(metric: str, observed: float, baseline: float | None) -> float:
    if baseline is None:
        return 0.0
    if metric == "error_rate":
        return max(0.0, observed - baseline)
    return max(0.0, (baseline - observed) / baseline) if baseline > 0 else 0.0


_UNCHANGED: Any = object()


def reconcile(
    conn: Connection,
    *,
    name: str,
    policy: Policy,
    alert_targets: Sequence[str],
    now: datetime,
    actor: str,
    reason: str | None = None,
    incident_id: int | None = None,
    route: str | None = None,
    run_id: int | None = None,
    pins: Sequence[str] | None = _UNCHANGED,
    deferred: list[tuple[dict[str, Any], list[str]]] | None = None,
) -> Reconciled:
    """Bring ``policy``'s stored version up to date with its routes' incidents and pins.

    Args:
        conn: The caller's transaction; the version, its event and publish messages are
            written in it.
        name: The policy's name.
        policy: Its configuration.
        alert_targets: Where ``policy.changed`` goes.
        now: The time of the change (a run's logical time, or the clock).
        actor: Who changes it: ``routewatch`` (detection) or ``cli`` / ``api`` (by hand).
        reason: Why, in words; derived from the change when omitted.
        incident_id: The incident behind the change, if one.
        route: The route whose run triggered the change, for the event.
        run_id: That run.
        pins: New pins (a list to pin, None to unpin); omitted: keep the stored ones.
        deferred: When given, events are appended here (body, targets) for the caller to
            enqueue later in the same transaction, so they follow the caller's own events.
    """
    # One writer per policy at a time, until this transaction ends: concurrent changes
    # (two replicas, a pin racing a detection) queue instead of clashing on a number.
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"routewatch.policy:{name}"},
        )
    elif conn.dialect.name == "sqlite":
        # A write statement takes SQLite's write lock now, before the version is read.
        conn.execute(text("UPDATE policy_versions SET version = version WHERE 0"))
    latest = latest_version(conn, name)
    if latest is not None and actor != "routewatch" and now < latest.created_at:
        # A change by hand reads its clock before it waits for the lock above: a
        # concurrent one may have been stamped later. Versions keep their order in time.
        now = latest.created_at
    stored_pins = latest.pins if latest else None
    new_pins = stored_pins if pins is _UNCHANGED else (tuple(pins) if pins else None)
    decision = decide_chain(
        policy.chain,
        troubles(conn, policy.chain),
        auto=policy.mode == "auto",
        pins=new_pins,
    )
    before = latest.chain if latest else tuple(policy.chain)
    if (
        latest is not None
        and decision.same_as(latest.chain, [d.route for d in latest.demoted], latest.pins)
        and decision.all_degraded == latest.all_degraded
    ):
        return Reconciled(policy=name, before=before, decision=decision, version=None)
    version = (latest.version if latest else 0) + 1
    if incident_id is None:
        # The incident behind a demotion is the demoted route's, whichever run decided it.
        fresh = [d for d in decision.demoted if d.route in before]
        incident_id = fresh[0].incident_id if fresh else None
    outbox: list[tuple[dict[str, Any], list[str]]] = []
    why = reason or _reason(
        before,
        decision,
        first=latest is None,
        was_demoted=[d.route for d in latest.demoted] if latest else [],
        was_all_degraded=latest.all_degraded if latest else False,
    )
    conn.execute(
        insert(PolicyVersionRow).values(
            policy=name,
            version=version,
            chain=list(decision.chain),
            pins=None if decision.pins is None else list(decision.pins),
            demoted=[demotion_json(d) for d in decision.demoted],
            actor=actor,
            reason=why,
            incident_id=incident_id,
            created_at=now,
            all_degraded=decision.all_degraded,
        )
    )
    # The first version of an untouched configured chain is no news; any other change is.
    if latest is not None or decision.pins is not None or decision.chain != tuple(policy.chain):
        outbox.append(
            (
                {
                    "event": "policy.changed",
                    "id": str(uuid.uuid4()),
                    "at": now.isoformat(),
                    "route": route,
                    "eval_set": None,
                    "run_id": run_id,
                    "policy": name,
                    "mode": policy.mode,
                    "version": version,
                    "chain": list(decision.chain),
                    "previous_chain": list(before),
                    "demoted": [demotion_json(d) for d in decision.demoted],
                    "pins": None if decision.pins is None else list(decision.pins),
                    "actor": actor,
                    "reason": why,
                    "incident_id": incident_id,
                    "all_degraded": decision.all_degraded,
                    "severity": "critical" if decision.all_degraded else "info",
                },
                list(alert_targets),
            )
        )
    outbox.append(
        (
            {"event": PUBLISH_EVENT, "policy": name, "version": version},
            publish_targets(name, policy),
        )
    )
    if deferred is None:
        for body, targets in outbox:
            enqueue(conn, body, targets, now)
    else:
        deferred.extend(outbox)
    return Reconciled(policy=name, before=before, decision=decision, version=version)


def demotion_json(d: Demotion) -> dict[str, Any]:
    """A demotion as stored and published (the policy JSON file's ``demoted`` entries)."""
    return {
        "route": d.route,
        "since": d.since.isoformat(),
        "reason": d.reason,
        "incident_id": d.incident_id,
    }


def _reason(
    before: Sequence[str],
    decision: PolicyDecision,
    *,
    first: bool,
    was_demoted: Sequence[str] = (),
    was_all_degraded: bool = False,
) -> str:
    if first:
        return "first version, from the configured chain"
    if decision.pins is not None:
        return f"pinned by hand to {' → '.join(decision.pins)}"
    dropped = [r for r in before if r not in decision.chain]
    back = [r for r in decision.chain if r not in before]
    parts = []
    if dropped:
        parts.append("demoted " + ", ".join(dropped))
    if back:
        parts.append("restored " + ", ".join(back))
    if decision.all_degraded:
        parts.append(f"every route is degraded; kept {decision.kept}")
    if parts:
        return "; ".join(parts)
    # The chain is the same: only which routes count as demoted changed.
    now_demoted = [d.route for d in decision.demoted]
    newly = [r for r in now_demoted if r not in was_demoted]
    cleared = [r for r in was_demoted if r not in now_demoted]
    if newly:
        parts.append("degraded " + ", ".join(newly))
    if cleared:
        parts.append("no longer degraded " + ", ".join(cleared))
    if was_all_degraded and not decision.all_degraded:
        parts.append(f"{decision.chain[0]} recovered: not every route is degraded now")
    if parts:
        return "; ".join(parts) + "; active chain unchanged"
    return "active chain unchanged"


def policies_of(route: str, policies: Mapping[str, Policy]) -> list[str]:
    """Names of the policies whose configured chain includes ``route``."""
    return [name for name, p in policies.items() if route in p.chain]


def policies_mentioning(conn: Connection, route: str, policies: Mapping[str, Policy]) -> list[str]:
    """``policies_of(route)``, and the policies whose stored version still names ``route``.

    A route taken out of a policy's configured chain stays in its stored chain, or among
    its demoted routes, until the policy is reconciled.
    """
    names = []
    for name, policy in policies.items():
        latest = None if route in policy.chain else latest_version(conn, name)
        if route in policy.chain or (
            latest is not None
            and (route in latest.chain or any(d.route == route for d in latest.demoted))
        ):
            names.append(name)
    return names
