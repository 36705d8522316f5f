"""An item's baseline output, and the judge's pairwise preferences between it and today's.

``last_good_runs`` finds, for each item, the newest trusted, healthy run that passed it:
the report shows that output as the incident's "before", and pairwise mode compares
today's output with it. ``fallen_items`` picks the items of a run whose score fell below
their own mean over those healthy runs; ``store_preference`` keeps the judge's answer,
once per run and item, and the queries below read the answers back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from routewatch.evalset import Item
from routewatch.store.tables import (
    DetectionRow,
    EvalItemRow,
    ItemOutcomeRow,
    PairwisePreference,
    PairwisePreferenceRow,
    ResultRow,
    RunRow,
    RunStatus,
)

BEFORE_LOOKBACK = 30
"""Runs before a given one searched for each item's last good output."""

FELL_BY = 1e-9
"""An item fell when today's score is below its baseline by more than rounding."""


def healthy_runs_before(
    conn: Connection, *, route: str, eval_set_name: str, before: datetime
) -> list[int]:
    """The trusted, healthy runs among the ``BEFORE_LOOKBACK`` before ``before``, newest first.

    Trusted and healthy: detected with a known baseline, inside no incident, not
    ``judge_suspect`` (so a "before" output is a good one, not yesterday's failure).
    """
    rows = conn.execute(
        select(RunRow.id, DetectionRow.in_incident)
        .join(DetectionRow, DetectionRow.run_id == RunRow.id)
        .where(
            RunRow.route == route,
            RunRow.eval_set_name == eval_set_name,
            RunRow.status == RunStatus.completed,
            RunRow.judge_suspect.is_(False),
            DetectionRow.known.is_(True),
            RunRow.at < before,
        )
        .order_by(RunRow.at.desc())
        .limit(BEFORE_LOOKBACK)
    ).all()
    return [r.id for r in rows if not r.in_incident]


def last_good_runs(
    conn: Connection, *, route: str, eval_set_name: str, before: datetime, item_ids: list[str]
) -> dict[str, int]:
    """For each of ``item_ids``, the newest healthy run before ``before`` that passed it."""
    healthy = healthy_runs_before(conn, route=route, eval_set_name=eval_set_name, before=before)
    if not healthy:
        return {}
    passed = conn.execute(
        select(ItemOutcomeRow.run_id, ItemOutcomeRow.item_id).where(
            ItemOutcomeRow.run_id.in_(healthy),
            ItemOutcomeRow.item_id.in_(item_ids),
            ItemOutcomeRow.passed.is_(True),
        )
    )
    return _newest(((o.item_id, o.run_id) for o in passed), healthy)


def _newest(found: Iterable[tuple[str, int]], newest_first: list[int]) -> dict[str, int]:
    """For each key, the run of ``found`` that comes first in ``newest_first``."""
    rank = {run_id: i for i, run_id in enumerate(newest_first)}
    best: dict[str, int] = {}
    for key, run_id in found:
        if key not in best or rank[run_id] < rank[best[key]]:
            best[key] = run_id
    return best


@dataclass(frozen=True, slots=True, kw_only=True)
class FallenItem:
    """An item whose score in a run fell below its baseline, with both outputs to compare."""

    item: Item
    """The item as the run asked it (prompt and reference)."""
    item_hash: str
    today_score: float
    baseline_score: float
    """The item's mean score over the healthy runs before this one."""
    baseline_run_id: int
    """The newest of those runs that passed the item: its output is the baseline's."""
    today_output: str
    baseline_output: str


def fallen_items(engine: Engine, *, run_id: int, limit: int) -> list[FallenItem]:
    """Up to ``limit`` items of ``run_id`` whose score fell most below their baseline.

    An item's baseline is its mean score over ``healthy_runs_before`` the run, and the
    output compared with today's is that of the newest of them that passed it (matched
    by item hash, so an edited item is not compared with answers to its old prompt).
    Items without such a run, with no answered sample today, or whose answer is the same
    text as the baseline's are left out. Items already compared in this run count
    towards ``limit`` but are not returned again.
    """
    with engine.connect() as conn:
        run = conn.execute(
            select(RunRow.id, RunRow.route, RunRow.eval_set_name, RunRow.at).where(
                RunRow.id == run_id
            )
        ).first()
        if run is None:
            return []
        today = {
            o.item_hash: o
            for o in conn.execute(
                select(ItemOutcomeRow.item_hash, ItemOutcomeRow.item_id, ItemOutcomeRow.score)
                .where(ItemOutcomeRow.run_id == run_id, ItemOutcomeRow.score.is_not(None))
                .order_by(ItemOutcomeRow.item_id)
            )
        }
        healthy = healthy_runs_before(
            conn, route=run.route, eval_set_name=run.eval_set_name, before=run.at
        )
        if not today or not healthy:
            return []
        history = conn.execute(
            select(
                ItemOutcomeRow.run_id,
                ItemOutcomeRow.item_hash,
                ItemOutcomeRow.score,
                ItemOutcomeRow.passed,
            ).where(ItemOutcomeRow.run_id.in_(healthy), ItemOutcomeRow.item_hash.in_(list(today)))
        ).all()
        scores: dict[str, list[float]] = {}
        for h in history:
            if h.score is not None:
                scores.setdefault(h.item_hash, []).append(h.score)
        good = _newest(((h.item_hash, h.run_id) for h in history if h.passed), healthy)
        drops = []
        for item_hash, outcome in today.items():
            if item_hash not in good or item_hash not in scores:
                continue
            mean = sum(scores[item_hash]) / len(scores[item_hash])
            if outcome.score < mean - FELL_BY:
                drops.append((mean - outcome.score, outcome.item_id, item_hash, mean))
        if not drops:
            return []
        drops.sort(key=lambda d: (-d[0], d[1]))
        done = _compared(conn, run_id)
        ids = [d[1] for d in drops]
        outputs = _outputs(conn, [run_id, *{good[d[2]] for d in drops}], ids)
        items = _items(conn, run_id, ids)
    eligible = []
    for _, item_id, item_hash, mean in drops:
        today_output = outputs.get((run_id, item_id))
        baseline_output = outputs.get((good[item_hash], item_id))
        if today_output is None or baseline_output is None or today_output == baseline_output:
            continue
        eligible.append(
            FallenItem(
                item=items[item_id],
                item_hash=item_hash,
                today_score=today[item_hash].score,
                baseline_score=mean,
                baseline_run_id=good[item_hash],
                today_output=today_output,
                baseline_output=baseline_output,
            )
        )
    return [f for f in eligible[:limit] if f.item_hash not in done]


def _compared(conn: Connection, run_id: int) -> set[str]:
    return set(
        conn.execute(
            select(PairwisePreferenceRow.item_hash).where(PairwisePreferenceRow.run_id == run_id)
        ).scalars()
    )


def _outputs(
    conn: Connection, run_ids: list[int], item_ids: list[str]
) -> dict[tuple[int, str], str]:
    """The first answered sample's output per (run, item); fallbacks were not the route's."""
    out: dict[tuple[int, str], str] = {}
    for r in conn.execute(
        select(ResultRow.run_id, ResultRow.item_id, ResultRow.output)
        .where(
            ResultRow.run_id.in_(run_ids),
            ResultRow.item_id.in_(item_ids),
            ResultRow.error_class.is_(None),
            ResultRow.output.is_not(None),
            ResultRow.served_by_fallback.is_(False),
        )
        .order_by(ResultRow.sample)
    ):
        out.setdefault((r.run_id, r.item_id), r.output)
    return out


def _items(conn: Connection, run_id: int, item_ids: list[str]) -> dict[str, Item]:
    """The items as stored with the run's eval-set version."""
    rows = conn.execute(
        select(EvalItemRow.item_id, EvalItemRow.definition)
        .join(RunRow, RunRow.eval_set_id == EvalItemRow.eval_set_id)
        .where(RunRow.id == run_id, EvalItemRow.item_id.in_(item_ids))
    )
    # Only the fields the comparison shows, so a stored definition of an older version
    # still reads if Item gains or loses other fields.
    return {
        r.item_id: Item.model_validate(
            {
                "id": r.item_id,
                **{k: r.definition.get(k) for k in ("input", "messages", "reference")},
            }
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class PreferenceRecord:
    """One item's comparison, to store."""

    run_id: int
    item_hash: str
    item_id: str
    baseline_run_id: int
    today_score: float
    baseline_score: float
    judge: str
    model: str
    preference: PairwisePreference | None
    baseline_first: PairwisePreference | None
    today_first: PairwisePreference | None
    baseline_first_answer: str | None
    today_first_answer: str | None
    reasoning: str | None
    calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    error: str | None


def store_preference(engine: Engine, record: PreferenceRecord, *, now: datetime) -> bool:
    """Store one comparison; False when the run's item was compared already (by anyone)."""
    values: dict[str, Any] = {
        name: getattr(record, name) for name in PreferenceRecord.__dataclass_fields__
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(PairwisePreferenceRow), {**values, "created_at": now})
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPreference:
    """A stored comparison, as ``routewatch judge pairwise`` lists it."""

    run_id: int
    at: datetime
    eval_set: str
    item_id: str
    today_score: float
    baseline_score: float
    baseline_run_id: int | None
    judge: str
    preference: str | None
    baseline_first: str | None
    today_first: str | None
    reasoning: str | None
    error: str | None
    cost_usd: float


def preferences(engine: Engine, *, route: str, run_id: int | None = None) -> list[StoredPreference]:
    """The comparisons of ``run_id``, or of the route's newest run that has any."""
    with engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(
                select(RunRow.id)
                .join(PairwisePreferenceRow, PairwisePreferenceRow.run_id == RunRow.id)
                .where(RunRow.route == route)
                .order_by(RunRow.at.desc(), RunRow.id.desc())
                .limit(1)
            ).scalar()
            if run_id is None:
                return []
        rows = conn.execute(
            select(
                PairwisePreferenceRow.__table__,
                RunRow.at,
                RunRow.eval_set_name,
            )
            .join(RunRow, RunRow.id == PairwisePreferenceRow.run_id)
            .where(RunRow.route == route, RunRow.id == run_id)
            .order_by(
                (PairwisePreferenceRow.baseline_score - PairwisePreferenceRow.today_score).desc(),
                PairwisePreferenceRow.item_id,
            )
        ).all()
    return [
        StoredPreference(
            run_id=r.run_id,
            at=r.at,
            eval_set=r.eval_set_name,
            item_id=r.item_id,
            today_score=r.today_score,
            baseline_score=r.baseline_score,
            baseline_run_id=r.baseline_run_id,
            judge=r.judge,
            preference=r.preference,
            baseline_first=r.baseline_first,
            today_first=r.today_first,
            reasoning=r.reasoning,
            error=r.error,
            cost_usd=r.cost_usd,
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class PreferenceCount:
    """How a run's comparisons came out."""

    compared: int
    """Items the judge gave a preference on (errors left out)."""
    baseline: int
    today: int
    tie: int


def preference_counts(conn: Connection, run_ids: Sequence[int]) -> dict[int, PreferenceCount]:
    """The outcome of each run's comparisons, for runs that have any answered."""
    counts: dict[int, Counter[str]] = {}
    for r in conn.execute(
        select(
            PairwisePreferenceRow.run_id,
            PairwisePreferenceRow.preference,
            func.count().label("n"),
        )
        .where(
            PairwisePreferenceRow.run_id.in_(list(run_ids)),
            PairwisePreferenceRow.preference.is_not(None),
        )
        .group_by(PairwisePreferenceRow.run_id, PairwisePreferenceRow.preference)
    ):
        counts.setdefault(r.run_id, Counter())[r.preference] += r.n
    return {
        run_id: PreferenceCount(
            compared=sum(c.values()),
            baseline=c[PairwisePreference.baseline],
            today=c[PairwisePreference.today],
            tie=c[PairwisePreference.tie],
        )
        for run_id, c in counts.items()
    }
