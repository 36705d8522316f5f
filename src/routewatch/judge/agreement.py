"""PURE: how far the judge agrees with people, from (human grade, judge grade) pairs.

The shell (``store.agreement``) gathers each labelled item's judge verdicts; this
module turns them into Spearman's rho for the grades, Cohen's kappa for pass/fail,
the share of equal grades and the mean distance in scale points, per criterion,
per route and per ISO week. A pair is one judge decision: the judge cache lets one
verdict score the same output in many runs, and it still counts once (once per week
in the weekly figures). No database here: plain values in, plain values out.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from routewatch.scoring import passes

MIN_PAIRS_FOR_RHO = 3
"""Below three pairs a rank correlation is either +-1 or undefined: it says nothing."""

MEAN_OF_CRITERIA = "(mean)"
"""How the mean over an item's criteria is named where a criterion name would stand."""

GRADE_TOLERANCE = 1e-9
"""Two grades this close are the same grade (averaged judge samples are floats)."""

SAME_GRADE_WITHIN = 0.5
"""A judge's grade closer than this to the person's counts as the same grade (``exact``):
it rounds to it. Grades read from ``logprobs`` (an expected grade) or averaged over
``judge_samples`` are seldom whole numbers, so equality to the digit would read near 0."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelledVerdict:
    """One judge verdict on a labelled item's output, beside the person's grade."""

    run_id: int
    route: str
    week: str
    """ISO week of the run's logical time, ``2026-W47``."""
    item: str
    criterion: str
    human: float
    """The item's ``human_score``, on the eval set's scale."""
    judge: float
    """The judge's grade for ``criterion``, on the same scale."""
    verdict_ids: tuple[int, ...]
    """The stored verdicts behind ``judge``: one, or one per criterion for a mean.
    Pairs of one item with the same verdicts are one judge decision, counted once."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Statistic:
    """A statistic that may be undefined; ``note`` says why when ``value`` is None."""

    value: float | None
    p_value: float | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PassTable:
    """Pass/fail of the same outputs by a person and by the judge: a 2x2 table."""

    both_pass: int
    human_only: int
    """The person passed it, the judge failed it."""
    judge_only: int
    """The judge passed it, the person failed it."""
    both_fail: int

    @property
    def n(self) -> int:
        """Pairs in the table."""
        return self.both_pass + self.human_only + self.judge_only + self.both_fail


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """The judge's agreement with people over ``n`` pairs."""

    n: int
    exact: float | None
    """Share of pairs where the judge's grade rounds to the person's (``SAME_GRADE_WITHIN``)."""
    mean_abs_diff: float | None
    """Mean of ``|human - judge|``, in scale points."""
    spearman: Statistic
    """Spearman's rank correlation of the grades, with its p-value."""
    kappa: Statistic
    """Cohen's kappa of pass/fail (a grade passes at the set's ``pass_threshold``)."""
    passes: PassTable


@dataclass(frozen=True, slots=True, kw_only=True)
class WeekAgreement:
    """Agreement over one ISO week's runs."""

    week: str
    agreement: Agreement


@dataclass(frozen=True, slots=True, kw_only=True)
class CountedPair:
    """``decisions`` distinct judge decisions of one week that gave one labelled item a grade."""

    week: str
    human: float
    judge: float
    decisions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementRow:
    """Agreement for one criterion on one route, overall and week by week."""

    criterion: str | None
    """None: the mean of the item's verdicts over every criterion."""
    route: str | None
    """None: every route together."""
    overall: Agreement
    weeks: tuple[WeekAgreement, ...]


def iso_week(at: datetime, timezone: str) -> str:
    """The ISO week (``2026-W47``) of ``at`` in ``timezone``."""
    year, week, _ = at.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{week:02d}"


def normalised(grade: float, scale: tuple[int, int]) -> float:
    """A grade on ``scale`` mapped to 0..1, the way judge scores are stored."""
    lo, hi = scale
    return (grade - lo) / (hi - lo)


def pass_table(
    pairs: Iterable[tuple[float, float]], scale: tuple[int, int], pass_threshold: float
) -> PassTable:
    """Count ``(human, judge)`` pairs by who passes them."""
    return _pass_table(Counter(pairs), scale, pass_threshold)


def _pass_table(
    counts: Mapping[tuple[float, float], int], scale: tuple[int, int], pass_threshold: float
) -> PassTable:
    cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
    for (human, judge), count in counts.items():
        key = (
            passes(normalised(human, scale), pass_threshold),
            passes(normalised(judge, scale), pass_threshold),
        )
        cells[key] += count
    return PassTable(
        both_pass=cells[True, True],
        human_only=cells[True, False],
        judge_only=cells[False, True],
        both_fail=cells[False, False],
    )


def cohen_kappa(table: PassTable) -> Statistic:
    """Cohen's kappa from a 2x2 table: agreement beyond what chance would give.

    Undefined (None, with a note) without pairs, or when chance alone already
    agrees on everything: both sides put every output in the same one class.
    """
    n = table.n
    if n == 0:
        return Statistic(value=None, note="no pairs")
    observed = (table.both_pass + table.both_fail) / n
    human_pass = (table.both_pass + table.human_only) / n
    judge_pass = (table.both_pass + table.judge_only) / n
    expected = human_pass * judge_pass + (1 - human_pass) * (1 - judge_pass)
    if expected >= 1 - GRADE_TOLERANCE:
        side = "pass" if human_pass == 1 else "fail"
        return Statistic(value=None, note=f"person and judge {side} every output: chance agrees")
    return Statistic(value=(observed - expected) / (1 - expected))


def spearman(humans: Sequence[float], judges: Sequence[float]) -> Statistic:
    """Spearman's rho of the grades and its two-sided p-value; None when undefined."""
    if len(humans) < MIN_PAIRS_FOR_RHO:
        return Statistic(value=None, note=f"fewer than {MIN_PAIRS_FOR_RHO} pairs")
    # A constant side has no ranks to correlate; scipy would warn and return nan.
    if _constant(humans):
        return Statistic(value=None, note="every human score is the same")
    if _constant(judges):
        return Statistic(value=None, note="the judge gave every output the same grade")
    # Imported here: scipy.stats costs a second and 50 MB, and `run` loads this module.
    from scipy.stats import spearmanr

    result = spearmanr(humans, judges)
    rho, p = float(result.statistic), float(result.pvalue)
    if math.isnan(rho):
        return Statistic(value=None, note="undefined for these grades")
    return Statistic(value=rho, p_value=None if math.isnan(p) else p)


def agreement(
    pairs: Iterable[tuple[float, float]], *, scale: tuple[int, int], pass_threshold: float
) -> Agreement:
    """Every agreement measure over ``(human, judge)`` pairs on ``scale``."""
    return counted_agreement(Counter(pairs), scale=scale, pass_threshold=pass_threshold)


def counted_agreement(
    counts: Mapping[tuple[float, float], int], *, scale: tuple[int, int], pass_threshold: float
) -> Agreement:
    """``agreement`` over pairs given as ``{(human, judge): how many}``.

    Grades take few values, so a week of many thousand pairs is a few dozen entries;
    only Spearman's rho needs the pairs one by one.
    """
    n = sum(counts.values())
    diffs = {pair: abs(pair[0] - pair[1]) for pair in counts}
    table = _pass_table(counts, scale, pass_threshold)
    humans = [h for (h, _), c in counts.items() for _ in range(c)]
    judges = [j for (_, j), c in counts.items() for _ in range(c)]
    return Agreement(
        n=n,
        exact=sum(c for p, c in counts.items() if diffs[p] < SAME_GRADE_WITHIN) / n if n else None,
        mean_abs_diff=sum(diffs[p] * c for p, c in counts.items()) / n if n else None,
        spearman=spearman(humans, judges),
        kappa=cohen_kappa(table),
        passes=table,
    )


def agreement_rows(
    verdicts: Sequence[LabelledVerdict],
    *,
    criteria: Sequence[str],
    scale: tuple[int, int],
    pass_threshold: float,
) -> list[AgreementRow]:
    """Agreement per criterion (and the mean over criteria) x route (and all routes).

    A ``human_score`` grades the item as a whole, so besides each criterion it is
    compared with the mean of the item's verdicts over the criteria it got. Rows
    for ``criteria`` come in the given order; each row has a line per ISO week.
    """
    by_criterion: dict[str | None, list[LabelledVerdict]] = defaultdict(list)
    for v in verdicts:
        by_criterion[v.criterion].append(v)
    keys: list[str | None] = [c for c in criteria if by_criterion.get(c)]
    if len(keys) > 1:
        by_criterion[None] = _mean_over_criteria(verdicts)
        keys.append(None)
    routes: list[str | None] = [*sorted({v.route for v in verdicts})]
    if len(routes) > 1:
        routes.append(None)
    rows = []
    for criterion in keys:
        for route in routes:
            chosen = [v for v in by_criterion[criterion] if route is None or v.route == route]
            if chosen:
                rows.append(_row(criterion, route, chosen, scale, pass_threshold))
    return rows


def agreement_by_week(
    pairs: Iterable[CountedPair],
    weeks: Sequence[str],
    *,
    scale: tuple[int, int],
    pass_threshold: float,
) -> tuple[WeekAgreement, ...]:
    """Agreement in each of ``weeks``, in that order; a week without pairs has ``n == 0``.

    Pairs of weeks not in ``weeks`` are ignored.
    """
    by_week: dict[str, Counter[tuple[float, float]]] = {week: Counter() for week in weeks}
    for p in pairs:
        if p.week in by_week:
            by_week[p.week][p.human, p.judge] += p.decisions
    return tuple(
        WeekAgreement(
            week=week,
            agreement=counted_agreement(by_week[week], scale=scale, pass_threshold=pass_threshold),
        )
        for week in weeks
    )


def _row(
    criterion: str | None,
    route: str | None,
    verdicts: Sequence[LabelledVerdict],
    scale: tuple[int, int],
    pass_threshold: float,
) -> AgreementRow:
    by_week: dict[str, list[LabelledVerdict]] = defaultdict(list)
    for v in verdicts:
        by_week[v.week].append(v)
    return AgreementRow(
        criterion=criterion,
        route=route,
        overall=agreement(decisions(verdicts), scale=scale, pass_threshold=pass_threshold),
        weeks=tuple(
            WeekAgreement(
                week=week,
                agreement=agreement(
                    decisions(by_week[week]), scale=scale, pass_threshold=pass_threshold
                ),
            )
            for week in sorted(by_week)
        ),
    )


def decisions(verdicts: Iterable[LabelledVerdict]) -> list[tuple[float, float]]:
    """``(human, judge)`` once per judge decision: per item and verdicts, however many runs.

    A cached verdict reused by every run of a deterministic route would otherwise add
    the same pair once a run, and overstate ``n`` and the significance.
    """
    found: dict[tuple[str, tuple[int, ...]], tuple[float, float]] = {}
    for v in verdicts:
        found.setdefault((v.item, v.verdict_ids), (v.human, v.judge))
    return list(found.values())


def _mean_over_criteria(verdicts: Iterable[LabelledVerdict]) -> list[LabelledVerdict]:
    """One verdict per (run, item): the mean judge grade over the criteria it got."""
    grouped: dict[tuple[int, str], list[LabelledVerdict]] = defaultdict(list)
    for v in verdicts:
        grouped[v.run_id, v.item].append(v)
    means = []
    for group in grouped.values():
        first = group[0]
        means.append(
            LabelledVerdict(
                run_id=first.run_id,
                route=first.route,
                week=first.week,
                item=first.item,
                criterion=MEAN_OF_CRITERIA,
                human=first.human,
                judge=sum(v.judge for v in group) / len(group),
                verdict_ids=tuple(sorted(i for v in group for i in v.verdict_ids)),
            )
        )
    return means


def _constant(values: Sequence[float]) -> bool:
    return max(values) - min(values) <= GRADE_TOLERANCE
