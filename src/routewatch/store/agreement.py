"""Reads for judge agreement: judge verdicts on labelled items, by week.

``routewatch judge agreement`` reads the pairs themselves (``eval_set_agreement``); the
weekly report reads them counted per week in one grouped query (``agreement_trends``).
Labels come from the eval-set file as it is now, matched to stored items by item
hash: a ``human_score`` added or corrected later applies to every output of the same
prompt, reference and checks (it is not part of the set's version, so a stored
definition may predate it). Only the newest ``RECENT_WEEKS`` ISO weeks with runs are
read, so the query stays bounded however long the history.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    case,
    distinct,
    func,
    or_,
    select,
)

from routewatch.evalset import EvalSet
from routewatch.judge.agreement import (
    AgreementRow,
    CountedPair,
    LabelledVerdict,
    WeekAgreement,
    agreement_by_week,
    agreement_rows,
    iso_week,
)
from routewatch.store.tables import (
    EvalItemRow,
    EvalSetRow,
    JudgeVerdictRow,
    ResultRow,
    RunRow,
    RunStatus,
    ScoreRow,
)

RECENT_WEEKS = 8
"""ISO weeks with runs shown, newest first counted: enough to see a judge drift."""

FIRST_SAMPLE = 0
"""Samples are numbered from 0; the first one stands for the (run, item)."""

JUDGE_SCORER_PREFIX = "judge:"

MAX_BOUND_HASHES = 900
"""Labelled item hashes filtered in SQL at most (old SQLite builds allow 999 bound
values); beyond that they are filtered as the grouped rows arrive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalSetAgreement:
    """The judge's agreement with people on one eval set, or why there is none."""

    eval_set: str
    judge: str | None
    scale: tuple[int, int]
    pass_threshold: float
    labelled_items: int
    """Items of the set (as it is now) that carry a ``human_score``."""
    weeks: tuple[str, ...]
    """The ISO weeks read, oldest first."""
    rows: tuple[AgreementRow, ...]
    note: str | None
    """Why ``rows`` is empty, when it is."""


def eval_set_agreement(
    engine: Engine, evalset: EvalSet, *, timezone: str, weeks: int = RECENT_WEEKS
) -> EvalSetAgreement:
    """Agreement per criterion and route over the set's last ``weeks`` ISO weeks with runs.

    Reads completed runs of the set on its current scale, the first sample of each
    labelled item, not served by a fallback model; judge errors have no verdict and
    are skipped. Weeks are taken in ``timezone``.
    """
    labels = {i.hash: i.human_score for i in evalset.items if i.human_score is not None}
    judge = (evalset.judge or "default") if evalset.criteria else None

    def result(
        note: str | None, found: tuple[str, ...] = (), rows: tuple[AgreementRow, ...] = ()
    ) -> EvalSetAgreement:
        return EvalSetAgreement(
            eval_set=evalset.name,
            judge=judge,
            scale=evalset.scale,
            pass_threshold=evalset.pass_threshold,
            labelled_items=len(labels),
            weeks=found,
            rows=rows,
            note=note,
        )

    if judge is None:
        return result("not judged (no `criteria`): nothing to compare with human scores")
    if not labels:
        lo, hi = evalset.scale
        return result(f"no item has a `human_score` (a grade from {lo} to {hi}) to compare with")
    since, found = _recent_weeks(engine, evalset, timezone, weeks)
    verdicts = (
        _labelled_verdicts(engine, evalset, labels, since, timezone) if since is not None else []
    )
    if not verdicts:
        return result("no judge verdict on a labelled item yet: run the set's routes first")
    rows = agreement_rows(
        verdicts,
        criteria=list(evalset.criteria),
        scale=evalset.scale,
        pass_threshold=evalset.pass_threshold,
    )
    shown = tuple(w for w in found if any(v.week == w for v in verdicts))
    return result(None, shown, tuple(rows))


def _completed_runs_of(evalset: EvalSet) -> list[ColumnElement[bool]]:
    lo, hi = evalset.scale
    return [
        RunRow.eval_set_name == evalset.name,
        RunRow.status == RunStatus.completed,
        # Grades on another scale are not comparable with today's labels.
        EvalSetRow.scale_min == lo,
        EvalSetRow.scale_max == hi,
    ]


def _recent_weeks(
    engine: Engine, evalset: EvalSet, timezone: str, weeks: int
) -> tuple[datetime | None, tuple[str, ...]]:
    """The earliest run time inside the newest ``weeks`` ISO weeks with runs, and the weeks."""
    query = (
        select(RunRow.at)
        .join(EvalSetRow, EvalSetRow.id == RunRow.eval_set_id)
        .where(*_completed_runs_of(evalset))
        .order_by(RunRow.at.desc())
    )
    found: list[str] = []
    since: datetime | None = None
    with engine.connect() as conn:
        # Newest first, stopping at the first run of an older week than wanted.
        for (at,) in conn.execute(query.execution_options(yield_per=500)):
            week = iso_week(at, timezone)
            if week not in found:
                if len(found) == weeks:
                    break
                found.append(week)
            since = at
    return since, tuple(reversed(found))


def _labelled_verdicts(
    engine: Engine,
    evalset: EvalSet,
    labels: dict[str, float],
    since: datetime,
    timezone: str,
) -> list[LabelledVerdict]:
    scorers = {f"{JUDGE_SCORER_PREFIX}{c}": c for c in evalset.criteria}
    query = (
        select(
            RunRow.id,
            RunRow.route,
            RunRow.at,
            EvalItemRow.item_hash,
            ResultRow.item_id,
            ScoreRow.scorer,
            JudgeVerdictRow.id,
            JudgeVerdictRow.raw_score,
        )
        .select_from(RunRow)
        .join(EvalSetRow, EvalSetRow.id == RunRow.eval_set_id)
        .join(ResultRow, ResultRow.run_id == RunRow.id)
        .join(EvalItemRow, EvalItemRow.id == ResultRow.eval_item_id)
        .join(ScoreRow, ScoreRow.result_id == ResultRow.id)
        .join(JudgeVerdictRow, JudgeVerdictRow.id == ScoreRow.judge_verdict_id)
        .where(
            *_completed_runs_of(evalset),
            RunRow.at >= since,
            ResultRow.sample == FIRST_SAMPLE,
            ResultRow.served_by_fallback.is_(False),
            ScoreRow.scorer.in_(list(scorers)),
            JudgeVerdictRow.raw_score.is_not(None),
        )
    )
    weeks: dict[datetime, str] = {}
    verdicts = []
    with engine.connect() as conn:
        for run_id, route, at, item_hash, item_id, scorer, verdict_id, raw_score in conn.execute(
            query
        ):
            human = labels.get(item_hash)
            if human is None or raw_score is None:
                continue
            if at not in weeks:
                weeks[at] = iso_week(at, timezone)
            verdicts.append(
                LabelledVerdict(
                    run_id=run_id,
                    route=route,
                    week=weeks[at],
                    item=item_id,
                    criterion=scorers[scorer],
                    human=human,
                    judge=raw_score,
                    verdict_ids=(verdict_id,),
                )
            )
    return verdicts


def agreements(
    engine: Engine, eval_sets: Iterable[EvalSet], *, timezone: str, weeks: int = RECENT_WEEKS
) -> list[EvalSetAgreement]:
    """``eval_set_agreement`` of each set, in the order given."""
    return [eval_set_agreement(engine, s, timezone=timezone, weeks=weeks) for s in eval_sets]


@dataclass(frozen=True, slots=True, kw_only=True)
class WeekSpan:
    """One week of an agreement trend: ``[start, end)``, timezone-aware, and its label."""

    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementTrend:
    """One judge's agreement with people on one eval set and criterion, week by week."""

    judge: str
    eval_set: str
    criterion: str
    scale: tuple[int, int]
    pass_threshold: float
    weeks: tuple[WeekAgreement, ...]
    """Every week asked for, oldest first; ``n == 0`` where no labelled item was judged."""


def agreement_trends(
    conn: Connection,
    eval_sets: Iterable[EvalSet],
    *,
    routes: Sequence[str],
    weeks: Sequence[WeekSpan],
) -> list[AgreementTrend]:
    """Agreement per judge, eval set and criterion in each of ``weeks`` (contiguous, oldest first).

    The pairs are those ``eval_set_agreement`` reads (completed runs of ``routes`` on
    the set's current scale, first sample, no fallback), each (item, verdict) counted
    once a week. The database counts the distinct verdicts per week, criterion, item
    and grade in one grouped query, so the rows read grow with the labelled items and
    grades, not with the runs. Sets without criteria or labels give no trend, nor does
    a criterion without a pair in any of ``weeks``.
    """
    sets = {
        s.name: s
        for s in eval_sets
        if s.criteria and any(i.human_score is not None for i in s.items)
    }
    if not sets or not routes or not weeks:
        return []
    labels = {
        (s.name, i.hash): i.human_score
        for s in sets.values()
        for i in s.items
        if i.human_score is not None
    }
    found: dict[tuple[str, str, str], list[CountedPair]] = defaultdict(list)
    for row in conn.execute(_trend_query(sets.values(), labels, routes, weeks)):
        human = labels.get((row.eval_set, row.item_hash))
        criterion = row.scorer.removeprefix(JUDGE_SCORER_PREFIX)
        if human is None or criterion not in sets[row.eval_set].criteria:
            continue
        found[row.judge, row.eval_set, criterion].append(
            CountedPair(
                week=weeks[row.week].label,
                human=human,
                judge=row.raw_score,
                decisions=row.decisions,
            )
        )
    labels_of_weeks = [w.label for w in weeks]
    order = sorted(found, key=lambda k: (k[0], k[1], list(sets[k[1]].criteria).index(k[2])))
    return [
        AgreementTrend(
            judge=judge,
            eval_set=name,
            criterion=criterion,
            scale=sets[name].scale,
            pass_threshold=sets[name].pass_threshold,
            weeks=agreement_by_week(
                found[judge, name, criterion],
                labels_of_weeks,
                scale=sets[name].scale,
                pass_threshold=sets[name].pass_threshold,
            ),
        )
        for judge, name, criterion in order
    ]


def _trend_query(
    sets: Iterable[EvalSet],
    labels: dict[tuple[str, str], float],
    routes: Sequence[str],
    weeks: Sequence[WeekSpan],
) -> Select[Any]:
    sets = list(sets)
    week = case(*((RunRow.at < w.end, i) for i, w in enumerate(weeks)), else_=len(weeks))
    scorers = sorted({f"{JUDGE_SCORER_PREFIX}{c}" for s in sets for c in s.criteria})
    conditions = [
        RunRow.route.in_(list(routes)),
        RunRow.at >= weeks[0].start,
        RunRow.at < weeks[-1].end,
        RunRow.status == RunStatus.completed,
        # Grades on another scale are not comparable with today's labels.
        or_(
            *(
                and_(
                    RunRow.eval_set_name == s.name,
                    EvalSetRow.scale_min == s.scale[0],
                    EvalSetRow.scale_max == s.scale[1],
                )
                for s in sets
            )
        ),
        ResultRow.sample == FIRST_SAMPLE,
        ResultRow.served_by_fallback.is_(False),
        ScoreRow.scorer.in_(scorers),
        JudgeVerdictRow.raw_score.is_not(None),
    ]
    hashes = sorted({h for _, h in labels})
    if len(hashes) <= MAX_BOUND_HASHES:
        conditions.append(EvalItemRow.item_hash.in_(hashes))
    scored = (
        select(
            week.label("week"),
            RunRow.eval_set_name.label("eval_set"),
            JudgeVerdictRow.judge,
            ScoreRow.scorer,
            EvalItemRow.item_hash,
            JudgeVerdictRow.id.label("verdict_id"),
            JudgeVerdictRow.raw_score,
        )
        .select_from(RunRow)
        .join(EvalSetRow, EvalSetRow.id == RunRow.eval_set_id)
        .join(ResultRow, ResultRow.run_id == RunRow.id)
        .join(EvalItemRow, EvalItemRow.id == ResultRow.eval_item_id)
        .join(ScoreRow, ScoreRow.result_id == ResultRow.id)
        .join(JudgeVerdictRow, JudgeVerdictRow.id == ScoreRow.judge_verdict_id)
        .where(*conditions)
        .subquery()
    )
    # Grouped outside: PostgreSQL would not match the CASE (with its bound times) in
    # the select list to a second rendering of it in GROUP BY.
    keys = [scored.c[k] for k in ("week", "eval_set", "judge", "scorer", "item_hash", "raw_score")]
    return select(*keys, func.count(distinct(scored.c.verdict_id)).label("decisions")).group_by(
        *keys
    )
