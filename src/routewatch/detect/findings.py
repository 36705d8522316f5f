"""PURE: one run against its baseline -> candidate findings -> the findings that page.

``evaluate`` runs every detector on one (route, eval set) run: the sigma rule, the
paired item tests, the CUSUM, error rate, latency, cost and critical items. Each
p-valued detector holds a Bonferroni share of the route's budget. ``decide`` then
applies the fleet-wide budget across the routes of one cycle (Bonferroni or
Benjamini-Hochberg) and keeps the candidates that page. A finding always needs the
statistical test *and* a drop of at least ``min_effect``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from routewatch.detect import cusum, paired
from routewatch.detect.baseline import (
    ItemHistory,
    ItemOutcome,
    RunRecord,
    item_histories,
    item_runs,
    select_baseline,
    weighted_score,
)
from routewatch.detect.budget import Detector, bh_cutoff, shares
from routewatch.detect.dist import binomtest_greater
from routewatch.detect.sigma import (
    SigmaMode,
    SigmaRule,
    binary_sd_floor,
    graded_sd_floor,
    log_rule,
    sigma_rule,
)

if TYPE_CHECKING:  # config imports sqlalchemy and apscheduler; detect stays pure
    from routewatch.config import Detection


class Metric(StrEnum):
    """What a finding is about; incidents are kept per (route, eval set, metric)."""

    score = "score"
    error_rate = "error_rate"
    latency = "p95_latency_ms"
    cost = "cost_per_call_usd"


CRITICAL_PREFIX = "critical:"
"""Critical items get a metric each: ``critical:<item id>``."""

STILL_BAD_ALPHA = 0.05
"""While an incident is open, a run whose test stays below this (with the drop still at
least ``min_effect``) keeps it open; recovery needs ``recover_runs`` runs above it."""

WORST_ITEMS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class WorstItem:
    """An item that moved most, for alerts and the report."""

    item_id: str
    baseline: float
    """Its baseline pass rate (or mean score)."""
    today: float
    surprise: float
    """``-log(1 - smoothed baseline pass rate)`` for a failure, or the standardised drop."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One detector's verdict on one run, before the fleet-wide budget is applied."""

    metric: str
    detector: Detector
    observed: float
    baseline_mean: float | None = None
    baseline_sd: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    share: float | None = None
    """Share of the route's budget for p-valued detectors; None for threshold ones."""
    fired: bool = False
    """Threshold detectors (sigma, CUSUM, critical items): the threshold was crossed."""
    effect_ok: bool = True
    """The drop (or rise) is at least the configured minimum."""
    still_bad: bool = False
    pages: bool = True
    """False for the sigma rule when ``method: paired``: it is shown, not paged on."""
    worst_items: tuple[WorstItem, ...] = ()
    simes: float | None = None
    """The paired quality tests share their budget (``combine_paired``): this test's
    weighted Simes value, on the scale of ``adjusted``; None outside that family."""

    @property
    def adjusted(self) -> float:
        """``p / share`` (or its Simes value): compared with the route's per-cycle budget."""
        if self.p_value is None or self.share is None or not self.effect_ok:
            return math.inf
        if self.simes is not None:
            return self.simes
        return self.p_value / self.share


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """Everything the detectors computed for one run."""

    run_id: int
    known: bool
    """Enough baseline runs to judge quality; False is the ``unknown`` state."""
    baseline_runs: int
    paired_items: int = 0
    sigma: SigmaRule | None = None
    binary: paired.BinaryTest | None = None
    graded: paired.GradedTest | None = None
    cusum: float = 0.0
    cusum_h: float | None = None
    alpha_route: float
    candidates: tuple[Candidate, ...] = ()

    @property
    def route_p(self) -> float:
        """The smallest budget-adjusted p-value among paging candidates."""
        return min((c.adjusted for c in self.candidates if c.pages), default=math.inf)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What pages after the fleet budget: findings, and metrics that look bad."""

    evaluation: Evaluation
    findings: tuple[Candidate, ...] = ()
    bad_metrics: frozenset[str] = field(default_factory=frozenset)
    """Metrics with a finding or a test below ``STILL_BAD_ALPHA``: they keep incidents open."""


def route_alpha(settings: Detection, alpha_cycle: float, tests: int) -> float:
    """A route's share of the per-cycle budget (Bonferroni across ``tests`` routes)."""
    if settings.budget_scope == "route":
        return alpha_cycle
    return alpha_cycle / max(1, tests)


def evaluate(
    today: RunRecord,
    history: Sequence[RunRecord],
    settings: Detection,
    *,
    alpha_route: float,
) -> Evaluation:
    """Run every detector on ``today`` against ``history`` (completed runs, newest first).

    Args:
        today: The run to judge.
        history: Earlier completed runs of the same route and eval set, newest first.
        settings: The ``detection`` config.
        alpha_route: The route's per-cycle false-alarm budget (``route_alpha``).
    """
    base = select_baseline(history, Metric.score, settings)
    if len(base) < settings.min_baseline_runs:
        return Evaluation(
            run_id=today.run_id, known=False, baseline_runs=len(base), alpha_route=alpha_route
        )
    # The item runs start with the baseline runs: one pass gives both histories.
    own = item_histories(base)
    longer = select_baseline(history, Metric.score, settings, runs=item_runs(settings))
    hist = item_histories(longer[len(base) :], start=own)
    pairs = [
        (key, item, hist[key])
        for key, item in sorted(today.items.items())
        if not today.judge_suspect  # its judged scores are not to be trusted
        and item.samples_scored > 0
        and item.score is not None
        and key in hist
        and hist[key].runs >= settings.min_item_history
    ]
    candidates: list[Candidate] = []
    binary = graded = None
    rule = None
    c_now = history[0].cusum if history and today.judge_suspect else 0.0
    h = None
    if pairs:
        graded_scores = _graded(pairs)
        budget = shares(graded_scores)
        binary = paired.binary_test(
            [p[2].passes for p in pairs],
            [p[2].trials for p in pairs],
            [p[1].samples_passed for p in pairs],
            [p[1].samples_scored for p in pairs],
            design_drop=settings.design_drop,
        )
        rule = _sigma(base, own, pairs, settings, graded=graded_scores)
        drop_ok = binary.drop >= settings.min_effect
        worst = _worst_binary(pairs)
        # Every quality candidate describes the same run against the same baseline.
        quality = Candidate(
            metric=Metric.score,
            detector=Detector.sigma,
            observed=rule.observed,
            baseline_mean=rule.mean,
            baseline_sd=rule.sd,
            worst_items=worst,
        )
        candidates.append(
            replace(
                quality,
                threshold=rule.lower_limit,
                fired=rule.fired,
                effect_ok=rule.mean - rule.observed >= settings.min_effect,
                still_bad=rule.fired,
                pages=settings.method == "sigma",
            )
        )
        if settings.method == "paired":
            for detector, p in ((Detector.cet, binary.p_cet), (Detector.cetw, binary.p_cetw)):
                candidates.append(
                    replace(
                        quality,
                        detector=detector,
                        p_value=p,
                        share=budget[detector],
                        threshold=budget[detector] * alpha_route,
                        effect_ok=drop_ok,
                        still_bad=drop_ok and p <= STILL_BAD_ALPHA,
                    )
                )
            if graded_scores:
                graded = paired.graded_test(
                    [np.asarray(p[2].scores) for p in pairs],
                    [p[1].score for p in pairs],
                    seed=today.run_id,
                )
                graded_ok = graded.drop >= settings.min_effect
                candidates.append(
                    replace(
                        quality,
                        detector=Detector.graded,
                        p_value=graded.p_value,
                        share=budget[Detector.graded],
                        threshold=budget[Detector.graded] * alpha_route,
                        effect_ok=graded_ok,
                        still_bad=graded_ok and graded.p_value <= STILL_BAD_ALPHA,
                        worst_items=_worst_graded(pairs),
                    )
                )
            candidates = combine_paired(candidates, alpha_route)
            previous = history[0].cusum if history else 0.0
            c_now = cusum.step(previous, binary.p_mid, settings.cusum_k)
            h = cusum.threshold(1.0 / (budget[Detector.cusum] * alpha_route))
            candidates.append(
                replace(
                    quality,
                    detector=Detector.cusum,
                    threshold=h,
                    fired=c_now > h,
                    effect_ok=drop_ok or rule.mean - rule.observed >= settings.min_effect,
                )
            )
        candidates.extend(_critical(today, history, settings))
    candidates.extend(_errors(today, history, settings, alpha_route))
    candidates.extend(_log_metrics(today, history, settings, alpha_route))
    return Evaluation(
        run_id=today.run_id,
        known=True,
        baseline_runs=len(base),
        paired_items=len(pairs),
        sigma=rule,
        binary=binary,
        graded=graded,
        cusum=c_now,
        cusum_h=h,
        alpha_route=alpha_route,
        candidates=tuple(candidates),
    )


PAIRED = frozenset({Detector.cet, Detector.cetw, Detector.graded})


def combine_paired(candidates: Sequence[Candidate], alpha_route: float) -> list[Candidate]:
    """Weighted Simes over the paired quality tests instead of a fixed Bonferroni split.

    With ``a_i = p_i / share_i`` sorted ascending, test ``i`` (rank ``r``) is rejected at
    budget ``alpha`` when ``min_{j >= r} a_(j) / j <= alpha``: weighted Benjamini-Hochberg
    over the family (Genovese, Roeder and Wasserman 2006). It pages on everything a
    Bonferroni split pages on, and also when several tests are moderately small at
    once, as the count and weighted tests are on a diffuse drop. Its false-alarm bound
    holds under positive dependence (PRDS): each test's p-value rises with every item's
    passes today, and items are independent under the null.
    """
    family = sorted(
        (c.adjusted, i)
        for i, c in enumerate(candidates)
        if c.detector in PAIRED and math.isfinite(c.adjusted)
    )
    out = list(candidates)
    best = math.inf
    for rank in range(len(family), 0, -1):
        a, i = family[rank - 1]
        best = min(best, a / rank)
        c = out[i]
        share = c.share or 0.0  # set: the adjusted value is finite
        # The p-value at which this test would page against the route's whole budget.
        level = share * alpha_route * (a / best if best > 0 else 1.0)
        out[i] = replace(c, simes=best, threshold=min(1.0, level))
    return out


def decide(
    evaluations: Sequence[Evaluation], settings: Detection, *, alpha_cycle: float, tests: int
) -> list[Decision]:
    """Apply the fleet budget to one cycle's evaluations and keep what pages.

    Args:
        evaluations: One per (route, eval set) run in this cycle.
        settings: ``budget_scope`` and ``multiplicity``.
        alpha_cycle: The per-cycle budget (``budget.cycle_alpha``).
        tests: Configured (route, eval set) pairs; those missing from ``evaluations``
            count as tests that found nothing.
    """
    if settings.budget_scope == "route" or settings.multiplicity == "bonferroni":
        cutoffs = [e.alpha_route for e in evaluations]
    else:
        routes_p = [e.route_p for e in evaluations if e.known]
        finite = [p for p in routes_p if math.isfinite(p)]
        m = max(tests, len(routes_p))
        cutoff = bh_cutoff(finite, alpha_cycle, m)
        # The step-up level k q / m rejects the same routes as the cutoff, and lets
        # every candidate of a rejected route below it page, not only its smallest
        # (with one route this is the Bonferroni split within the route).
        level = -1.0 if cutoff is None else sum(p <= cutoff for p in finite) * alpha_cycle / m
        cutoffs = [level for _ in evaluations]
    decisions = []
    for evaluation, cut in zip(evaluations, cutoffs, strict=True):
        findings = tuple(
            c
            for c in evaluation.candidates
            if c.pages and c.effect_ok and (c.adjusted <= cut if c.p_value is not None else c.fired)
        )
        bad = {c.metric for c in findings} | {
            c.metric for c in evaluation.candidates if c.still_bad and c.effect_ok
        }
        decisions.append(
            Decision(evaluation=evaluation, findings=findings, bad_metrics=frozenset(bad))
        )
    return decisions


def _graded(pairs: Sequence[tuple[str, ItemOutcome, ItemHistory]]) -> bool:
    """Whether scores carry more than pass/fail (then the graded test runs too)."""
    binary = {0.0, 1.0}
    return any(item.score not in binary or not binary.issuperset(h.scores) for _, item, h in pairs)


def _sigma(
    base: Sequence[RunRecord],
    own: Mapping[str, ItemHistory],
    pairs: Sequence[tuple[str, ItemOutcome, ItemHistory]],
    settings: Detection,
    *,
    graded: bool,
) -> SigmaRule:
    """The sigma rule on the paired items, so an eval-set change compares like with like.

    ``own`` holds the items' histories over ``base``, the rule's own runs: its
    item-noise floor too comes from ``baseline_runs`` runs.
    """
    keys = [key for key, _, _ in pairs]
    series = [
        s
        for run in base
        if (s := weighted_score([run.items[k] for k in keys if k in run.items])) is not None
    ]
    observed = weighted_score([item for _, item, _ in pairs]) or 0.0  # every pair is scored
    hists = [own[k] for k in keys if k in own]
    if graded:
        floor = graded_sd_floor([h.scores for h in hists])
    else:
        floor = binary_sd_floor([h.passes for h in hists], [h.trials for h in hists])
    return sigma_rule(
        series or [observed],
        observed,
        sigma=settings.sigma,
        mode=SigmaMode(settings.sigma_mode),
        sd_floor=floor,
    )


def _worst_binary(pairs: Sequence[tuple[str, ItemOutcome, ItemHistory]]) -> tuple[WorstItem, ...]:
    ranked = []
    for _, item, h in pairs:
        failed = item.samples_scored - item.samples_passed
        if failed == 0:
            continue
        s = failed * paired.surprise(h.passes, h.trials, True)
        ranked.append(
            WorstItem(
                item_id=item.item_id,
                baseline=h.passes / h.trials,
                today=item.samples_passed / item.samples_scored,
                surprise=round(s, 4),
            )
        )
    ranked.sort(key=lambda w: (-w.surprise, w.item_id))
    return tuple(ranked[:WORST_ITEMS])


def _worst_graded(pairs: Sequence[tuple[str, ItemOutcome, ItemHistory]]) -> tuple[WorstItem, ...]:
    ranked = []
    for _, item, h in pairs:
        mean = sum(h.scores) / len(h.scores)
        sd = max(float(np.std(h.scores)), 0.05)
        drop = (mean - (item.score or 0.0)) / sd
        if drop > 0:
            ranked.append(
                WorstItem(
                    item_id=item.item_id,
                    baseline=mean,
                    today=item.score or 0.0,
                    surprise=round(drop, 4),
                )
            )
    ranked.sort(key=lambda w: (-w.surprise, w.item_id))
    return tuple(ranked[:WORST_ITEMS])


def _critical(
    today: RunRecord, history: Sequence[RunRecord], settings: Detection
) -> list[Candidate]:
    """Critical items that failed in ``critical_runs`` runs in a row, today included."""
    out = []
    for key, item in sorted(today.items.items()):
        if not item.critical or item.passed is not False:
            continue
        streak = 1
        for run in history:
            if streak >= settings.critical_runs:
                break
            earlier = run.items.get(key)
            if earlier is None or earlier.passed is not False:
                break
            streak += 1
        fired = streak >= settings.critical_runs
        out.append(
            Candidate(
                metric=f"{CRITICAL_PREFIX}{item.item_id}",
                detector=Detector.critical,
                observed=item.score or 0.0,
                baseline_mean=None,
                threshold=float(settings.critical_runs),
                fired=fired,
                still_bad=True,
                worst_items=(
                    WorstItem(
                        item_id=item.item_id,
                        baseline=1.0,
                        today=item.score or 0.0,
                        surprise=float(streak),
                    ),
                ),
            )
        )
    return out


def _errors(
    today: RunRecord, history: Sequence[RunRecord], settings: Detection, alpha_route: float
) -> list[Candidate]:
    """Today's error count against the baseline's pooled error rate (one-sided binomial)."""
    base = select_baseline(history, Metric.error_rate, settings)
    if len(base) < settings.min_baseline_runs or today.results_total == 0:
        return []
    errors = sum(r.errors_total for r in base)
    calls = sum(r.results_total for r in base)
    rate = (errors + 0.5) / (calls + 1.0)
    observed = today.errors_total / today.results_total
    p = binomtest_greater(today.errors_total, today.results_total, rate)
    share = shares(False)[Detector.errors]
    effect_ok = observed - errors / max(calls, 1) >= settings.min_effect
    worst = tuple(
        WorstItem(item_id=i.item_id, baseline=0.0, today=1.0, surprise=float(i.samples_errored))
        for i in sorted(today.items.values(), key=lambda i: (-i.samples_errored, i.item_id))
        if i.samples_errored
    )[:WORST_ITEMS]
    return [
        Candidate(
            metric=Metric.error_rate,
            detector=Detector.errors,
            observed=observed,
            baseline_mean=errors / max(calls, 1),
            threshold=share * alpha_route,
            p_value=p,
            share=share,
            effect_ok=effect_ok,
            still_bad=effect_ok and p <= STILL_BAD_ALPHA,
            worst_items=worst,
        )
    ]


def _log_metrics(
    today: RunRecord, history: Sequence[RunRecord], settings: Detection, alpha_route: float
) -> list[Candidate]:
    """Latency p95 and cost per call: a t prediction on log values, and a material rise."""
    out = []
    for metric, detector in ((Metric.latency, Detector.latency), (Metric.cost, Detector.cost)):
        base = select_baseline(history, metric, settings)
        observed = _log_value(today, metric)
        if len(base) < settings.min_baseline_runs or observed is None:
            continue
        rule = log_rule([v for r in base if (v := _log_value(r, metric)) is not None], observed)
        if rule is None:
            continue
        share = shares(False)[detector]
        effect_ok = rule.ratio >= 1.0 + settings.min_relative_change
        out.append(
            Candidate(
                metric=metric,
                detector=detector,
                observed=observed,
                baseline_mean=rule.baseline_mean,
                threshold=rule.baseline_mean * (1.0 + settings.min_relative_change),
                p_value=rule.p_value,
                share=share,
                effect_ok=effect_ok,
                still_bad=effect_ok and rule.p_value <= STILL_BAD_ALPHA,
            )
        )
    return out


def _log_value(run: RunRecord, metric: Metric) -> float | None:
    return run.p95_latency_ms if metric is Metric.latency else run.cost_per_call
