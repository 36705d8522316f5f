"""PURE: check results and judge scores -> sample, item and run scores.

A sample's score averages its checks and judge scores; an item's averages its
samples that a route itself answered; a run's is the weight-averaged item score.
Errors and fallbacks are counted beside the score, never folded into it, so a
flaky provider shows up as an error rate and not as a quality drop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from routewatch.checks import CheckResult

PASS_TOLERANCE = 1e-9
"""Slack when comparing a score to ``pass_threshold``. A mean of, say, three judge
grades on a 1..10 scale lands a rounding error off the threshold it truly meets;
without the slack such an item would fail by 1e-16."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleOutcome:
    """One sample of an item in a run: its score and how the call went.

    ``errored`` wins over ``fallback``: an errored sample counts as errored only.
    """

    score: float | None
    """From ``sample_score``; None when nothing scored the output."""
    errored: bool = False
    """The call failed; there is no output."""
    fallback: bool = False
    """Another model than the route's answered, so the score is not the route's."""

    def __post_init__(self) -> None:
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"a sample score must be in [0, 1], got {self.score}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemScore:
    """An item's score in one run, over its samples."""

    item_id: str
    score: float | None
    """Mean of the scored samples; None when no sample was scored."""
    passed: bool | None
    """``score >= pass_threshold``; None when ``score`` is None."""
    samples_scored: int
    samples_errored: int
    samples_fallback: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedItem:
    """An item's score with the item's ``weight`` from the eval set."""

    item: ItemScore
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"an item weight must be a finite number > 0, got {self.weight}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultFacts:
    """What one stored result (one call) contributes to a run's summary."""

    latency_ms: float
    tokens_in: int = 0
    """0 when the provider did not say."""
    tokens_out: int = 0
    cost_usd: float = 0.0
    errored: bool = False
    fallback: bool = False
    """Served by another model; counted once, as errored, when it also errored."""
    ttft_ms: float | None = None
    """Time to the first token; None for a call that was not streamed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """One run of one route on one eval set, as shown in ``status`` and the report."""

    items_total: int
    items_scored: int
    """Items with a score: at least one sample answered by the route and scored."""
    items_passed: int
    results_total: int
    errors_total: int
    fallback_total: int
    """Results served by a fallback model and not errored."""
    score: float | None
    """Mean of scored items' scores weighted by item weight; None when none scored."""
    pass_rate: float | None
    """Unweighted share of scored items that passed; None when none scored."""
    error_rate: float | None
    """``errors_total / results_total``; None when there are no results."""
    p50_latency_ms: float | None
    """Over results that did not error, fallbacks included (users waited for them)."""
    p95_latency_ms: float | None
    p50_ttft_ms: float | None = None
    """Time to first token over streamed results that did not error; None without any."""
    p95_ttft_ms: float | None = None
    tokens_in: int
    """Over all results, errored and fallback included: they were paid for."""
    tokens_out: int
    cost_usd: float


def sample_score(
    check_results: Sequence[CheckResult], judge_scores: Sequence[float]
) -> float | None:
    """The unweighted mean of check results (1.0 or 0.0) and judge scores.

    Args:
        check_results: The sample's checks.
        judge_scores: Judge scores already normalised to 0..1; the caller leaves out
            criteria the judge gave no verdict on.

    Returns:
        The mean, or None when there is nothing to average.

    Raises:
        ValueError: a judge score outside 0..1 (it was not normalised).
    """
    for value in judge_scores:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"judge scores must be normalised to [0, 1], got {value}")
    values = [1.0 if r.passed else 0.0 for r in check_results] + list(judge_scores)
    return _mean(values)


def stored_sample_score(scores: Sequence[tuple[float, float]]) -> float | None:
    """A sample's score from its stored scorer values: the mean weighted by scorer weight.

    DESIGN.md's "weighted mean of check results and normalised judge scores": every
    check and judge criterion is one ``(value, weight)`` pair (weight 1 by default),
    so this equals ``sample_score`` when all weights are 1.

    Returns:
        The weighted mean, or None when no scorer produced a value.
    """
    total = math.fsum(weight for _, weight in scores)
    if total <= 0:
        return None
    return math.fsum(value * weight for value, weight in scores) / total


def passes(score: float, pass_threshold: float) -> bool:
    """Whether ``score`` meets ``pass_threshold``, within ``PASS_TOLERANCE``."""
    return score >= pass_threshold - PASS_TOLERANCE


def item_score(
    item_id: str, sample_scores: Sequence[SampleOutcome], pass_threshold: float
) -> ItemScore:
    """Score one item from its samples in a run.

    Errored and fallback samples are counted but not scored. When none is left, the
    item has no score and no pass/fail: the run's error rate tells that story.
    """
    errored = sum(1 for s in sample_scores if s.errored)
    fallback = sum(1 for s in sample_scores if s.fallback and not s.errored)
    scores = [
        s.score for s in sample_scores if not (s.errored or s.fallback) and s.score is not None
    ]
    score = _mean(scores)
    return ItemScore(
        item_id=item_id,
        score=score,
        passed=None if score is None else passes(score, pass_threshold),
        samples_scored=len(scores),
        samples_errored=errored,
        samples_fallback=fallback,
    )


def summarize(items: Sequence[WeightedItem], results: Sequence[ResultFacts]) -> RunSummary:
    """Summarise a run; the order of ``items`` and of ``results`` does not matter.

    Args:
        items: Every item of the eval set, scored or not, with its weight.
        results: Every call the run made for the route, errored and fallback included.
    """
    scored = [w for w in items if w.item.score is not None]
    total_weight = math.fsum(w.weight for w in scored)
    score = (
        math.fsum(w.weight * (w.item.score or 0.0) for w in scored) / total_weight
        if scored
        else None
    )
    passed = sum(1 for w in scored if w.item.passed)
    errors = sum(1 for r in results if r.errored)
    latencies = [r.latency_ms for r in results if not r.errored]
    ttfts = [r.ttft_ms for r in results if not r.errored and r.ttft_ms is not None]
    return RunSummary(
        items_total=len(items),
        items_scored=len(scored),
        items_passed=passed,
        results_total=len(results),
        errors_total=errors,
        fallback_total=sum(1 for r in results if r.fallback and not r.errored),
        score=score,
        pass_rate=passed / len(scored) if scored else None,
        error_rate=errors / len(results) if results else None,
        p50_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
        p50_ttft_ms=percentile(ttfts, 50),
        p95_ttft_ms=percentile(ttfts, 95),
        tokens_in=sum(r.tokens_in for r in results),
        tokens_out=sum(r.tokens_out for r in results),
        cost_usd=math.fsum(r.cost_usd for r in results),
    )


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default: the value at rank ``q/100 * (n - 1)``
    of the sorted values. None when ``values`` is empty.

    Raises:
        ValueError: ``q`` outside 0..100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cost_usd(
    tokens_in: int, tokens_out: int, input_per_mtok: float, output_per_mtok: float
) -> float:
    """The price of one call in US dollars, from per-million-token prices."""
    return (tokens_in * input_per_mtok + tokens_out * output_per_mtok) / 1_000_000


def _mean(values: Sequence[float]) -> float | None:
    # fsum is exactly rounded, so the mean does not depend on the order of values.
    return math.fsum(values) / len(values) if values else None
