"""The judge verdict cache: an output already judged the same way is never judged again.

One row per hash of (judge model, params, template, criterion, input, reference, output).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from routewatch.store.tables import CanaryResultRow, JudgeSpendRow, JudgeVerdictRow


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
                JudgeVerdictRow.id,
                JudgeVerdictRow.raw_score,
                JudgeVerdictRow.score,
                JudgeVerdictRow.reasoning,
            ).where(JudgeVerdictRow.cache_key == cache_key, JudgeVerdictRow.error.is_(None))
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
    tokens_in: int,
    tokens_out: int,
    cost_usd: float,
    now: datetime,
) -> int:
    """Store a verdict and return its id; if another process stored it first, its id."""
    try:
        with engine.begin() as conn:
            return int(
                conn.execute(
                    insert(JudgeVerdictRow).returning(JudgeVerdictRow.id),
                    {
                        "cache_key": cache_key,
                        "judge": judge,
                        "model": model,
                        "criterion": criterion,
                        "raw_score": raw_score,
                        "score": score,
                        "reasoning": reasoning,
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
                    select(JudgeVerdictRow.id).where(JudgeVerdictRow.cache_key == cache_key)
                ).scalar_one()
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryRecord:
    """One canary criterion's verdict in one run."""

    canary_index: int
    criterion: str
    expected: float
    observed: float | None


def store_canary_results(
    engine: Engine, *, run_id: int, eval_set_id: int, records: list[CanaryRecord], now: datetime
) -> None:
    """Record a run's canary verdicts (a resumed run replaces its earlier ones)."""
    with engine.begin() as conn:
        conn.execute(delete(CanaryResultRow).where(CanaryResultRow.run_id == run_id))
        if records:
            conn.execute(
                insert(CanaryResultRow),
                [
                    {
                        "run_id": run_id,
                        "eval_set_id": eval_set_id,
                        "canary_index": r.canary_index,
                        "criterion": r.criterion,
                        "expected": r.expected,
                        "observed": r.observed,
                        "created_at": now,
                    }
                    for r in records
                ],
            )


def judge_spend(engine: Engine, *, judge: str, day: date) -> float:
    """What ``judge`` has cost on ``day`` (UTC), across every process."""
    with engine.connect() as conn:
        spent = conn.execute(
            select(JudgeSpendRow.cost_usd).where(
                JudgeSpendRow.judge == judge, JudgeSpendRow.day == day
            )
        ).scalar()
    return float(spent or 0.0)


def add_judge_spend(engine: Engine, *, judge: str, day: date, cost_usd: float, calls: int) -> None:
    """Add to a judge's spend on ``day``; concurrent writers add, never overwrite."""
    for _ in range(2):
        with engine.begin() as conn:
            updated = conn.execute(
                update(JudgeSpendRow)
                .where(JudgeSpendRow.judge == judge, JudgeSpendRow.day == day)
                .values(
                    cost_usd=JudgeSpendRow.cost_usd + cost_usd,
                    calls=JudgeSpendRow.calls + calls,
                )
            ).rowcount
            if updated:
                return
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(JudgeSpendRow),
                    {"judge": judge, "day": day, "cost_usd": cost_usd, "calls": calls},
                )
            return
        except IntegrityError:
            continue  # another process inserted the day's row first: add to it
