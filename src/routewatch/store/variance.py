"""Reads for ``routewatch judge variance``: each judged output's grades, per item and run.

The last ``runs`` completed runs of a route on an eval set, their results' judge scores
and the verdicts behind them (``judge_verdicts.samples`` holds every judge sample's
grade). Results that share a verdict gave the same output, judged once through the
cache; they become one ``JudgedOutput`` with ``copies``. ``judge.variance`` splits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from routewatch.errors import UsageError
from routewatch.judge.variance import ItemGrades, JudgedOutput, VarianceSplit, decompose
from routewatch.store.tables import JudgeVerdictRow, ResultRow, RunRow, RunStatus, ScoreRow

JUDGE_SCORER_PREFIX = "judge:"


@dataclass(frozen=True, slots=True, kw_only=True)
class CriterionVariance:
    """One criterion's split of the score spread."""

    criterion: str
    split: VarianceSplit


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalSetVariance:
    """The judge's and the route's spread on one eval set, or why it cannot be told."""

    route: str
    eval_set: str
    run_ids: tuple[int, ...]
    """The runs read, newest first."""
    first_at: datetime | None
    last_at: datetime | None
    route_samples: int
    """The most results any item had in one run (the route's ``samples``)."""
    judge_samples: int
    """The most grades any verdict holds (the judge's ``judge_samples``)."""
    criteria: tuple[CriterionVariance, ...]
    note: str | None
    """Why ``criteria`` is empty, when it is."""


def eval_set_variance(engine: Engine, *, route: str, eval_set: str, runs: int) -> EvalSetVariance:
    """The split over the last ``runs`` completed runs of ``route`` on ``eval_set``."""
    with engine.connect() as conn:
        found = conn.execute(
            select(RunRow.id, RunRow.at)
            .where(
                RunRow.route == route,
                RunRow.eval_set_name == eval_set,
                RunRow.status == RunStatus.completed,
            )
            .order_by(RunRow.at.desc(), RunRow.id.desc())
            .limit(runs)
        ).all()
        run_ids = tuple(r.id for r in found)
        shared = (
            select(
                ResultRow.run_id,
                ResultRow.item_id,
                ScoreRow.scorer,
                ScoreRow.judge_verdict_id,
                func.count().label("copies"),
            )
            .join(ScoreRow, ScoreRow.result_id == ResultRow.id)
            .where(
                ResultRow.run_id.in_(run_ids),
                ResultRow.served_by_fallback.is_(False),
                ScoreRow.scorer.startswith(JUDGE_SCORER_PREFIX),
                ScoreRow.judge_verdict_id.is_not(None),
            )
            .group_by(
                ResultRow.run_id, ResultRow.item_id, ScoreRow.scorer, ScoreRow.judge_verdict_id
            )
            .subquery()
        )
        # Grouped apart from the verdicts: PostgreSQL cannot group by a `json` column.
        graded = conn.execute(
            select(
                shared.c.run_id,
                shared.c.item_id,
                shared.c.scorer,
                JudgeVerdictRow.samples,
                shared.c.copies,
            )
            .join(JudgeVerdictRow, JudgeVerdictRow.id == shared.c.judge_verdict_id)
            .where(JudgeVerdictRow.error.is_(None))
        ).all()
        sampled = conn.execute(
            select(func.count())
            .select_from(ResultRow)
            .where(ResultRow.run_id.in_(run_ids))
            .group_by(ResultRow.run_id, ResultRow.item_id)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar()
    items: dict[str, dict[tuple[int, str], list[JudgedOutput]]] = {}
    judge_samples = 0
    for run_id, item_id, scorer, samples, copies in graded:
        grades = _grades(samples)
        judge_samples = max(judge_samples, len(grades))
        criterion = scorer.removeprefix(JUDGE_SCORER_PREFIX)
        outputs = items.setdefault(criterion, {}).setdefault((run_id, item_id), [])
        outputs.append(JudgedOutput(grades=grades, copies=int(copies)))
    route_samples = int(sampled or 0)
    criteria = tuple(
        CriterionVariance(
            criterion=criterion,
            split=decompose(
                ItemGrades(item_id=item_id, run_id=run_id, outputs=tuple(outputs))
                for (run_id, item_id), outputs in by_item.items()
            ),
        )
        for criterion, by_item in sorted(items.items())
    )
    note = _why_not(route, run_ids, bool(graded), route_samples, judge_samples)
    if note is None and not any(c.split.items for c in criteria):
        note = "no item has two judged results with two grades of an output yet"
    return EvalSetVariance(
        route=route,
        eval_set=eval_set,
        run_ids=run_ids,
        first_at=found[-1].at if found else None,
        last_at=found[0].at if found else None,
        route_samples=route_samples,
        judge_samples=judge_samples,
        criteria=criteria if note is None else (),
        note=note,
    )


def judge_variance(
    engine: Engine, *, route: str, eval_sets: Sequence[str], runs: int
) -> list[EvalSetVariance]:
    """``eval_set_variance`` of each set, in the order given.

    Raises:
        UsageError: no set's runs can tell the judge's spread from the route's (each
            says why: no runs, ``samples: 1`` or ``judge_samples: 1``).
    """
    found = [eval_set_variance(engine, route=route, eval_set=e, runs=runs) for e in eval_sets]
    if found and all(f.note is not None for f in found):
        raise UsageError(
            "cannot tell the judge's spread from the route's: "
            + "; ".join(f"{f.eval_set}: {f.note}" for f in found)
        )
    return found


def _grades(samples: Any) -> tuple[float, ...]:
    """A verdict's stored grades; anything that is not a list of numbers counts as none."""
    if not isinstance(samples, list):
        return ()
    if not all(isinstance(g, int | float) and not isinstance(g, bool) for g in samples):
        return ()
    return tuple(float(g) for g in samples)


def _why_not(
    route: str,
    run_ids: tuple[int, ...],
    judged: bool,
    route_samples: int,
    judge_samples: int,
) -> str | None:
    if not run_ids:
        return f"no completed run of route {route} on it yet"
    read = f"its last {len(run_ids)} run(s)"
    if not judged:
        return f"{read} have no judge verdicts (no `criteria`, or every judgement failed)"
    reasons = []
    if route_samples <= 1:
        reasons.append(
            f"{read} replayed each item once: set `samples: 3` (or more) on route {route}"
        )
    if judge_samples <= 1:
        reasons.append(
            f"the verdicts in {read} hold one grade each: set `judge_samples: 3` (or more) "
            "on the judge"
        )
    return "; ".join(reasons) or None
