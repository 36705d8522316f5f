"""How much of an item's score spread is the judge's and how much the route's. Pure.

A nested, one-way random-effects split per item and criterion: the route's samples of
an item give outputs, and the judge's ``judge_samples`` grades of each output vary
around that output's own mean. Within an output the spread is the judge's alone;
between outputs it is the route's plus what the judge's noise adds to each mean,
which the estimator takes off. ``store.variance`` loads the grades; ``decompose``
splits them and averages over items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NOISIEST = 5
"""Items listed as those with the most judge noise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgedOutput:
    """One distinct output of an item in a run, and the judge's grades of it."""

    grades: tuple[float, ...]
    """The ``judge_samples`` grades of the output (one verdict's ``samples``)."""
    copies: int = 1
    """Route samples of the item that gave this output. A repeated output is judged
    once (the cache), so its grades are counted once, and its mean ``copies`` times."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemGrades:
    """Everything the judge said about one item in one run, on one criterion."""

    item_id: str
    run_id: int
    outputs: tuple[JudgedOutput, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemSplit:
    """One item's variance components, in squared grade points."""

    item_id: str
    judge_variance: float
    """Spread of the judge's grades of one output (within outputs)."""
    route_variance: float
    """Spread of the outputs' true mean grades (between outputs, judge noise taken
    off); may be below zero for one item, where noise outweighs a small route spread."""
    units: int = 1
    """(run, item) pairs averaged into this row."""

    @property
    def judge_share(self) -> float | None:
        """The judge's share of one graded sample's variance; None when there is none."""
        return _share(self.judge_variance, self.route_variance)


@dataclass(frozen=True, slots=True, kw_only=True)
class VarianceSplit:
    """The judge's and the route's parts of the score spread, averaged over items."""

    judge_variance: float
    """Mean over (run, item) pairs of the within-output variance."""
    route_variance: float
    """Mean over (run, item) pairs of the between-output variance, floored at 0 after
    averaging (flooring each item first would bias it upwards)."""
    items: int
    """(run, item) pairs used: at least two route samples and two grades of an output."""
    noisiest: tuple[ItemSplit, ...]
    """The items with the largest judge variance, averaged over their runs."""

    @property
    def judge_share(self) -> float | None:
        """Share of the variance of one graded sample that is the judge's; None when 0/0."""
        return _share(self.judge_variance, self.route_variance)

    @property
    def route_share(self) -> float | None:
        """Share of the variance of one graded sample that is the route's; None when 0/0."""
        share = self.judge_share
        return None if share is None else 1.0 - share


def _share(judge: float, route: float) -> float | None:
    route = max(route, 0.0)
    total = judge + route
    return judge / total if total > 0 else None


def split_item(outputs: Sequence[JudgedOutput]) -> tuple[float, float] | None:
    """(judge variance, route variance) of one item in one run; None if it cannot tell.

    The judge's variance is the pooled unbiased variance within outputs. The route's is
    the unbiased variance of the true output means over the item's ``W`` results:
    ``[S - s2 * sum_g(w_g * (1 - w_g / W) / n_g)] / (W - 1)``, where ``S`` is the
    results' squared deviations of their output's mean grade from the overall mean and
    ``s2 / n_g`` the judge noise left in an output's mean of ``n_g`` grades. With every
    output distinct and ``n`` grades each, this is the textbook
    ``(MS_between - MS_within) / n``; when all results gave one output it is exactly 0.
    Needs ``W >= 2`` results and an output with two grades or more.
    """
    judged = [o for o in outputs if o.grades and o.copies > 0]
    within_df = sum(len(o.grades) - 1 for o in judged)
    results = sum(o.copies for o in judged)
    if within_df < 1 or results < 2:
        return None
    means = [sum(o.grades) / len(o.grades) for o in judged]
    within = sum(sum((g - m) ** 2 for g in o.grades) for o, m in zip(judged, means, strict=True))
    judge_variance = within / within_df
    overall = sum(o.copies * m for o, m in zip(judged, means, strict=True)) / results
    between = sum(o.copies * (m - overall) ** 2 for o, m in zip(judged, means, strict=True))
    noise = judge_variance * sum(
        o.copies * (1 - o.copies / results) / len(o.grades) for o in judged
    )
    return judge_variance, (between - noise) / (results - 1)


def decompose(items: Iterable[ItemGrades], *, noisiest: int = NOISIEST) -> VarianceSplit:
    """Split the spread of ``items`` (one criterion) into the judge's and the route's.

    Each (run, item) pair that can tell them apart (``split_item``) weighs the same.
    """
    per_item: dict[str, list[tuple[float, float]]] = {}
    used = 0
    judge_total = route_total = 0.0
    for item in items:
        found = split_item(item.outputs)
        if found is None:
            continue
        used += 1
        judge_total += found[0]
        route_total += found[1]
        per_item.setdefault(item.item_id, []).append(found)
    rows = [
        ItemSplit(
            item_id=item_id,
            judge_variance=sum(j for j, _ in pairs) / len(pairs),
            route_variance=sum(r for _, r in pairs) / len(pairs),
            units=len(pairs),
        )
        for item_id, pairs in per_item.items()
    ]
    rows.sort(key=lambda r: (-r.judge_variance, r.item_id))
    return VarianceSplit(
        judge_variance=judge_total / used if used else 0.0,
        route_variance=max(route_total / used, 0.0) if used else 0.0,
        items=used,
        noisiest=tuple(r for r in rows[:noisiest] if r.judge_variance > 0),
    )
