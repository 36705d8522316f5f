"""The report's judge-agreement section: how far each judge agreed with people, week by week.

``report.data`` calls ``load_agreement`` for the ISO weeks ending with the report's
window; the pairs are counted by ``store.agreement.agreement_trends`` in one grouped
query. Labels (``human_score``) come from the eval files in ``eval_dir`` as they are now,
as for ``routewatch judge agreement``; a folder that does not load gives a note, never a
failed report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from routewatch.config import Config
from routewatch.errors import EvalSetError
from routewatch.evalset import EvalSet, load_eval_dir
from routewatch.store.agreement import AgreementTrend, WeekSpan, agreement_trends

AGREEMENT_WEEKS = 8
"""ISO weeks of judge agreement shown, the last one holding the end of the report's window;
fewer when the first judged verdicts came later than the first of them."""
MIN_AGREEMENT_PAIRS = 10
"""Fewer judge decisions than this in a week show as "not enough pairs": one pair more or
less would move kappa or rho by more than the differences worth reading."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementSection:
    """Judge agreement with people per judge, eval set and criterion, or why there is none."""

    weeks: tuple[str, ...]
    """ISO week labels, oldest first."""
    trends: tuple[AgreementTrend, ...]
    note: str | None = None
    """Why ``trends`` is empty, when it is."""
    min_pairs: int = MIN_AGREEMENT_PAIRS


def agreement_weeks(end: datetime, timezone: str, count: int = AGREEMENT_WEEKS) -> list[WeekSpan]:
    """The ``count`` ISO weeks (in ``timezone``) up to the one holding the instant before ``end``.

    The last week is cut at ``end``, so the section shows nothing after the report's window.
    """
    zone = ZoneInfo(timezone)
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    monday = last - timedelta(days=last.weekday())
    spans = []
    for k in range(count - 1, -1, -1):
        first = monday - timedelta(weeks=k)
        year, week, _ = first.isocalendar()
        spans.append(
            WeekSpan(
                label=f"{year}-W{week:02d}",
                start=_midnight(first, zone),
                end=min(_midnight(first + timedelta(days=7), zone), end),
            )
        )
    return spans


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)


def load_agreement(
    conn: Connection,
    config: Config,
    end: datetime,
    eval_sets: Mapping[str, EvalSet] | None = None,
) -> AgreementSection | None:
    """The section for the weeks up to ``end``; None when no eval set of the routes is judged.

    Args:
        conn: An open connection to the store.
        config: The routes and their eval sets; ``eval_dir`` when ``eval_sets`` is None.
        end: The end of the report's window.
        eval_sets: The loaded eval sets by name, when the caller has them.
    """
    weeks = agreement_weeks(end, config.timezone)
    labels = tuple(w.label for w in weeks)
    if eval_sets is None:
        try:
            eval_sets = load_eval_dir(Path(config.eval_dir))
        except EvalSetError:
            return AgreementSection(
                weeks=labels,
                trends=(),
                note="Judge agreement not shown: the eval sets in `eval_dir` do not load "
                "(`routewatch validate` lists the problems).",
            )
    names = dict.fromkeys(n for route in config.routes.values() for n in route.evals)
    judged = [eval_sets[n] for n in names if n in eval_sets and eval_sets[n].criteria]
    if not judged:
        return None
    labelled = [s for s in judged if any(i.human_score is not None for i in s.items)]
    if not labelled:
        return AgreementSection(
            weeks=labels,
            trends=(),
            note="Judge agreement not shown: no item of the judged eval sets ("
            + ", ".join(s.name for s in judged)
            + ") carries a `human_score`.",
        )
    trends = agreement_trends(conn, labelled, routes=list(config.routes), weeks=weeks)
    # Weeks before the first judged one are history not yet made, not weeks without pairs.
    first = next(
        (i for i in range(len(labels)) if any(t.weeks[i].agreement.n for t in trends)),
        len(labels) - 1,
    )
    trends = [replace(t, weeks=t.weeks[first:]) for t in trends]
    return AgreementSection(
        weeks=labels[first:],
        trends=tuple(trends),
        note=None
        if trends
        else f"No judge verdict on a labelled item in {labels[0]} to {labels[-1]}.",
    )
