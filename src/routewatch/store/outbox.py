"""The outbox: events written with the change that caused them, delivered later, at least once.

A message is one event for one target (``slack``, ``webhook:<key>``, ``publish:<policy>:<key>``)
with its own ``delivery_id``, the receivers' idempotency key. ``claim_due`` leases due
messages to one dispatcher (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and a conditional
update everywhere, so two dispatchers never claim one message): the lease pushes
``next_attempt_at`` forward, so a dispatcher that dies mid-delivery leaves a message that
another picks up when the lease ends. Every attempt is kept in ``delivery_attempts``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, type_coerce, update

from routewatch.store.tables import DeliveryAttemptRow, OutboxRow, OutboxStatus, UTCDateTime


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A claimed outbox message."""

    id: int
    delivery_id: str
    event: str
    target: str
    payload: Mapping[str, Any]
    attempts: int
    """Attempts so far, this one included."""
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """What the outbox still holds."""

    pending: int
    dead: int
    next_attempt_at: datetime | None


def enqueue(
    conn: Connection, body: Mapping[str, Any], targets: Sequence[str], now: datetime
) -> int:
    """Add one message per target for ``body`` in ``conn``'s transaction; returns how many.

    ``body`` is an event dict with an ``event`` key (the webhook body of DESIGN.md).
    """
    for target in targets:
        conn.execute(
            insert(OutboxRow).values(
                delivery_id=str(uuid.uuid4()),
                event=body["event"],
                target=target,
                payload=dict(body),
                created_at=now,
                status=OutboxStatus.pending,
                attempts=0,
                next_attempt_at=now,
            )
        )
    return len(targets)


def claim_due(
    engine: Engine,
    *,
    now: datetime,
    lease_s: float,
    limit: int = 50,
    due_by: datetime | None = None,
    skip_targets: Collection[str] = (),
    only_targets: Collection[str] | None = None,
) -> list[Message]:
    """Lease up to ``limit`` messages due by ``due_by`` (default: now) for ``lease_s`` s.

    ``skip_targets``: targets to leave alone (one that just failed, so that its other
    messages do not hold up every other target's); ``only_targets``: these alone.
    """
    claimed: list[Message] = []
    with engine.begin() as conn:
        query = (
            select(OutboxRow.__table__)
            .where(
                OutboxRow.status == OutboxStatus.pending,
                OutboxRow.next_attempt_at <= (due_by or now),
            )
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        if skip_targets:
            query = query.where(OutboxRow.target.not_in(list(skip_targets)))
        if only_targets is not None:
            query = query.where(OutboxRow.target.in_(list(only_targets)))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in conn.execute(query).all():
            taken = conn.execute(
                update(OutboxRow)
                .where(*_held(row.id, row.attempts))
                .values(
                    attempts=row.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=lease_s),
                )
            )
            if taken.rowcount == 1:
                claimed.append(
                    Message(
                        id=row.id,
                        delivery_id=row.delivery_id,
                        event=row.event,
                        target=row.target,
                        payload=row.payload,
                        attempts=row.attempts + 1,
                        created_at=row.created_at,
                    )
                )
    return claimed


def _held(message_id: int, attempts: int) -> tuple[Any, ...]:
    """The message still pending at ``attempts``: no other dispatcher claimed or settled it."""
    return (
        OutboxRow.id == message_id,
        OutboxRow.attempts == attempts,
        OutboxRow.status == OutboxStatus.pending,
    )


def extend_lease(engine: Engine, message: Message, until: datetime) -> bool:
    """Hold ``message``'s lease until ``until``, while its attempt is still the holder's."""
    with engine.begin() as conn:
        held = _held(message.id, message.attempts)
        done = conn.execute(update(OutboxRow).where(*held).values(next_attempt_at=until))
    return done.rowcount == 1


def backoff_s(attempts: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Wait after ``attempts`` failed attempts.

    It doubles from ``initial_s`` up to ``max_s``, with "equal jitter" (between half and all
    of it) so that retries to one receiver spread out.
    """
    base = min(max_s, initial_s * 2.0 ** max(0, attempts - 1))
    return base / 2 + rng.uniform(0, base / 2)


def record_attempt(
    engine: Engine,
    message: Message,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    now: datetime,
    retry_at: datetime | None,
) -> str:
    """Log one attempt and settle the message; returns its new status.

    Delivered when ``ok``; otherwise pending until ``retry_at``, or dead when that is None.
    """
    status = (
        OutboxStatus.delivered
        if ok
        else (OutboxStatus.pending if retry_at is not None else OutboxStatus.dead)
    )
    with engine.begin() as conn:
        conn.execute(
            insert(DeliveryAttemptRow).values(
                outbox_id=message.id,
                attempted_at=now,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        # Only the holder of this attempt settles it: a dispatcher whose lease ran out
        # (and whose message another dispatcher took) must not overwrite the outcome.
        conn.execute(
            update(OutboxRow)
            .where(*_held(message.id, message.attempts))
            .values(
                status=status,
                delivered_at=now if ok else None,
                last_error=None if ok else error,
                next_attempt_at=retry_at if retry_at is not None else now,
            )
        )
    return status.value


def backlog(engine: Engine) -> Backlog:
    """Counts of pending and dead messages, and when the next pending one is due."""
    with engine.connect() as conn:
        counts = dict(
            conn.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status)).all()
        )
        # type_coerce keeps the UTC decorator, which func.min() would drop on SQLite.
        next_at = conn.execute(
            select(type_coerce(func.min(OutboxRow.next_attempt_at), UTCDateTime())).where(
                OutboxRow.status == OutboxStatus.pending
            )
        ).scalar_one()
    return Backlog(
        pending=counts.get(OutboxStatus.pending.value, 0),
        dead=counts.get(OutboxStatus.dead.value, 0),
        next_attempt_at=next_at,
    )
