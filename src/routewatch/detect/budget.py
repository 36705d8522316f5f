"""PURE: the false-alarm budget, split across detectors, metrics and routes.

``detection.false_alarms_per_year`` is turned into a per-cycle probability, then split
with Bonferroni shares between the detectors of one route (valid under any dependence;
the paired quality tests pool theirs with weighted Simes) and across routes by
Bonferroni or Benjamini-Hochberg, so adding routes or metrics does not add pages
(STATISTICS.md 3.7).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

DAYS_PER_YEAR = 365.0


class Detector(StrEnum):
    """Who raised a finding; the ``detector`` field of incidents and webhooks."""

    sigma = "sigma"
    cet = "paired-count"
    cetw = "paired-weighted"
    graded = "paired-graded"
    cusum = "cusum"
    errors = "error-rate"
    latency = "latency-p95"
    cost = "cost"
    critical = "critical-item"


SHARES: Mapping[Detector, float] = {
    Detector.cet: 0.60,
    Detector.cetw: 0.05,
    Detector.cusum: 0.10,
    Detector.errors: 0.15,
    Detector.latency: 0.05,
    Detector.cost: 0.05,
}
"""Shares of a route's per-cycle budget: Bonferroni between metrics and the CUSUM,
weighted Simes among the paired quality tests (``findings.combine_paired``). The count
test gets most: a diffuse drop has only the count test to go on, and its power grows
with every share it gets, while a break shows in both tests and the weighted test
catches a 5-point break on a mixed route at 200 items about as often with 5 % of the
budget as with 20 % (``bench/detection.py``). The CUSUM's threshold grows only with
the log of its share (``cusum.H_BY_ARL0``). When graded scores are tested too, the
graded test takes half of the count test's share."""


def cycle_alpha(false_alarms_per_year: float, cycle_days: float) -> float:
    """The per-cycle false-alarm probability for a yearly budget and a cycle length."""
    return min(0.5, false_alarms_per_year * cycle_days / DAYS_PER_YEAR)


def shares(graded: bool) -> dict[Detector, float]:
    """The detector shares, with the graded test split off the count test's share."""
    out = dict(SHARES)
    if graded:
        out[Detector.graded] = out[Detector.cet] / 2
        out[Detector.cet] /= 2
    return out


def bh_cutoff(p_values: Sequence[float], q: float, tests: int) -> float | None:
    """Benjamini-Hochberg: the largest ``p_(k)`` with ``p_(k) <= k q / tests``.

    ``tests`` may exceed ``len(p_values)``: routes that did not run this cycle count as
    tests that found nothing, which keeps the procedure valid and conservative.
    Rejected are the p-values ``<=`` the returned cutoff; none when it is None.
    """
    if tests < len(p_values):
        raise ValueError(f"{len(p_values)} p-values but only {tests} tests")
    cutoff: float | None = None
    for rank, p in enumerate(sorted(p_values), start=1):
        if p <= rank * q / tests:
            cutoff = p
    return cutoff
