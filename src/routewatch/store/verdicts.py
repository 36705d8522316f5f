"""The judge verdict cache: an output already judged the same way is never judged again.

One row per hash of (judge model, params, template, criterion, input, reference, output,
samples), with each sample's grade beside their mean. Also each judge's spend per UTC
day, and the once-a-day ``judge.budget`` event when that spend reaches the budget.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from routewatch.store.outbox import enqueue
from routewatch.store.tables import CANARY_ERROR_LENGTH, Base

# Core tables, not the mapped classes: judging runs inside a replay, and a statement on
# a mapped class configures every mapper first (see ``routewatch.store.runs``).
_judge_verdicts = Base.metadata.tables["judge_verdicts"]
_canary_results = Base.metadata.tables["canary_results"]
_judge_spend = Base.metadata.tables["judge_spend"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedVerdict:
    """A stored verdict."""

    id: int
    raw_score: float
    score: float
    reasoning: str


def cached_verdict(engine: Engine, cache_key: str) -> CachedVerdict | None:
    """The verdict stored under ``cache_key``, if any."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                _judge_verdicts.c.id,
                _judge_verdicts.c.raw_score,
                _judge_verdicts.c.score,
                _judge_verdicts.c.reasoning,
            ).where(_judge_verdicts.c.cache_key == cache_key, _judge_verdicts.c.error.is_(None))
        ).first()
    if row is None or row.score is None or row.raw_score is None:
        return None
    return CachedVerdict(
        id=row.id, raw_score=row.raw_score, score=row.score, reasoning=row.reasoning or ""
    )


def store_verdict(
    engine: Engine,
    *,
    cache_key: str,
    judge: str,
    model: str,
    criterion: str,
    raw_score: float,
    score: float,
    reasoning: str,
    samples: Sequence[float],
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
    now: datetime,
) -> int:
    """Store a verdict and return its id; if another process stored it first, its id.

    ``raw_score`` is the mean of ``samples``, the grades of the ``judge_samples`` calls,
    kept so that the judge's own spread can be told from the route's.
    """
    try:
        with engine.begin() as conn:
            return int(
                conn.execute(
                    insert(_judge_verdicts).returning(_judge_verdicts.c.id),
                    {
                        "cache_key": cache_key,
                        "judge": judge,
                        "model": model,
                        "criterion": criterion,
                        "raw_score": raw_score,
                        "score": score,
                        "reasoning": reasoning,
                        "samples": list(samples),
                        "tokens_in": tokens_in,
                        "tokens_out": tokens_out,
                        "cost_usd": cost_usd,
                        "created_at": now,
                    },
                ).scalar_one()
            )
    except IntegrityError:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(_judge_verdicts.c.id).where(_judge_verdicts.c.cache_key == cache_key)
                ).scalar_one()
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryRecord:
    """One canary criterion's verdict in one run."""

    canary_index: int
    criterion: str
    expected: float
    observed: float | None
    error: str | None = None
    """Why there is no verdict (``observed`` is None), on one line; cut when stored."""


def store_canary_results(
    engine: Engine, *, run_id: int, eval_set_id: int, records: list[CanaryRecord], now: datetime
) -> None:
    """Record a run's canary verdicts (a resumed run replaces its earlier ones).

    An error longer than ``CANARY_ERROR_LENGTH`` is cut to it, ending in ``…``.
    """
    with engine.begin() as conn:
        conn.execute(delete(_canary_results).where(_canary_results.c.run_id == run_id))
        if records:
            conn.execute(
                insert(_canary_results),
                [
                    {
                        "run_id": run_id,
                        "eval_set_id": eval_set_id,
                        "canary_index": r.canary_index,
                        "criterion": r.criterion,
                        "expected": r.expected,
                        "observed": r.observed,
                        "error": _cut(r.error, CANARY_ERROR_LENGTH),
                        "created_at": now,
                    }
                    for r in records
                ],
            )


def _cut(text: str | None, limit: int) -> str | None:
    """``text`` at most ``limit`` characters long, ending in ``…`` where it was cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def judge_spend(engine: Engine, *, judge: str, day: date) -> float:
    """What ``judge`` has cost on ``day`` (UTC), across every process."""
    with engine.connect() as conn:
        spent = conn.execute(
            select(_judge_spend.c.cost_usd).where(
                _judge_spend.c.judge == judge, _judge_spend.c.day == day
            )
        ).scalar()
    return float(spent or 0.0)


def add_judge_spend(engine: Engine, *, judge: str, day: date, cost_usd: float, calls: int) -> None:
    """Add to a judge's spend on ``day``; concurrent writers add, never overwrite."""
    for _ in range(2):
        with engine.begin() as conn:
            updated = conn.execute(
                update(_judge_spend)
                .where(_judge_spend.c.judge == judge, _judge_spend.c.day == day)
                .values(
                    cost_usd=_judge_spend.c.cost_usd + cost_usd,
                    calls=_judge_spend.c.calls + calls,
                )
            ).rowcount
            if updated:
                return
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(_judge_spend),
                    {"judge": judge, "day": day, "cost_usd": cost_usd, "calls": calls},
                )
            return
        except IntegrityError:
            continue  # another process inserted the day's row first: add to it


def raise_budget_event(
    engine: Engine,
    *,
    judge: str,
    day: date,
    spent_usd: float,
    budget_usd: float,
    targets: Sequence[str],
    now: datetime,
) -> bool:
    """Raise ``judge.budget`` for ``judge`` on ``day``, unless it was raised already.

    The flag on the day's ``judge_spend`` row and the outbox messages are written in one
    transaction, so the event goes out once per judge and UTC day, whichever process
    finds the budget spent first. Returns whether this call raised it.
    """
    body = {
        "event": "judge.budget",
        "id": str(uuid.uuid4()),
        "at": now.isoformat(),
        "route": None,
        "eval_set": None,
        "judge": judge,
        "day": day.isoformat(),
        "spent_usd": round(spent_usd, 6),
        "budget_usd": budget_usd,
    }
    for _ in range(2):
        with engine.begin() as conn:
            if _flag_budget_alerted(conn, judge, day):
                enqueue(conn, body, targets, now)
                return True
            day_row = conn.execute(
                select(_judge_spend.c.judge).where(
                    _judge_spend.c.judge == judge, _judge_spend.c.day == day
                )
            ).first()
            if day_row is not None:
                return False  # raised already today
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(_judge_spend),
                    {
                        "judge": judge,
                        "day": day,
                        "cost_usd": 0.0,
                        "calls": 0,
                        "budget_alerted": True,
                    },
                )
                enqueue(conn, body, targets, now)
            return True
        except IntegrityError:
            continue  # another process made the day's row first: try the flag again
    return False


def _flag_budget_alerted(conn: Connection, judge: str, day: date) -> bool:
    """Set the day's ``budget_alerted`` if it was not set; whether this did it."""
    return bool(
        conn.execute(
            update(_judge_spend)
            .where(
                _judge_spend.c.judge == judge,
                _judge_spend.c.day == day,
                _judge_spend.c.budget_alerted.is_(False),
            )
            .values(budget_alerted=True)
        ).rowcount
    )
