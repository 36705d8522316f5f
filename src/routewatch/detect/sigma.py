"""PURE: the users' sigma rule, with an honest floor on the baseline's spread.

"Page me when today's score is 2 standard deviations below the baseline" is what users
asked for and understand, so it is always computed, stored and shown (the lower limit
in ``status`` and the report). With 14 baseline runs it fires on about 3.8 % of stable
days (STATISTICS.md 2.4); ``sigma_mode: prediction`` turns the multiplier into a true
tail probability. The same rule on ``log`` values watches latency and cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from routewatch.detect.dist import norm_sf, t_isf, t_sf


class SigmaMode(StrEnum):
    """How ``detection.sigma`` becomes a multiplier of the baseline sd."""

    classic = "classic"
    """``mean - sigma * sd``, as users write it."""
    prediction = "prediction"
    """A t prediction interval with the same tail as ``sigma`` under a known baseline."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SigmaRule:
    """The sigma rule's verdict on one run."""

    runs: int
    mean: float
    sd: float
    """Sample sd (ddof 1) of the baseline run scores."""
    sd_floor: float
    """What the items' own noise says the run-to-run sd can not be below."""
    multiplier: float
    observed: float
    lower_limit: float
    """``mean - multiplier * max(sd, sd_floor)``."""
    fired: bool


def multiplier(sigma: float, mode: SigmaMode, runs: int) -> float:
    """The sd multiplier: ``sigma``, or its t-prediction equivalent for ``runs`` runs."""
    if mode is SigmaMode.classic or runs < 2:
        return sigma
    return t_isf(norm_sf(sigma), runs - 1) * math.sqrt(1.0 + 1.0 / runs)


def binary_sd_floor(passes: Sequence[float], trials: Sequence[float]) -> float:
    """The run-to-run sd implied by per-item pass rates, never below one item in n.

    ``sqrt(sum p~(1-p~)) / n`` with ``p~ = (c + 0.5) / (m + 1)`` (STATISTICS.md 5.2): on a
    deterministic route it is about 2.5 items in 200, so one flipped item never pages,
    while the binomial ``sqrt(p(1-p)/n)`` would blind the rule with a 10-item floor.
    """
    n = len(passes)
    if n == 0:
        return 0.0
    smoothed = [(c + 0.5) / (m + 1.0) for c, m in zip(passes, trials, strict=True)]
    return max(math.sqrt(math.fsum(p * (1.0 - p) for p in smoothed)) / n, 1.0 / n)


def graded_sd_floor(histories: Sequence[Sequence[float]]) -> float:
    """The run-to-run sd implied by per-item score variances, shrunk toward their mean."""
    n = len(histories)
    if n == 0:
        return 0.0
    variances = [_var(h) for h in histories]
    pooled = math.fsum(variances) / n
    shrunk = [
        (len(h) * v + pooled) / (len(h) + 1.0) for h, v in zip(histories, variances, strict=True)
    ]
    return max(math.sqrt(math.fsum(shrunk)) / n, 1.0 / n)


def sigma_rule(
    baseline: Sequence[float],
    observed: float,
    *,
    sigma: float,
    mode: SigmaMode = SigmaMode.classic,
    sd_floor: float = 0.0,
) -> SigmaRule:
    """Whether ``observed`` is below ``mean - k * max(sd, sd_floor)`` of ``baseline``."""
    runs = len(baseline)
    if runs == 0:
        raise ValueError("the sigma rule needs at least one baseline run")
    mean = math.fsum(baseline) / runs
    sd = math.sqrt(_var(baseline) * runs / (runs - 1)) if runs > 1 else 0.0
    k = multiplier(sigma, mode, runs)
    lower = mean - k * max(sd, sd_floor)
    return SigmaRule(
        runs=runs,
        mean=mean,
        sd=sd,
        sd_floor=sd_floor,
        multiplier=k,
        observed=observed,
        lower_limit=lower,
        fired=observed < lower,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRule:
    """A one-sided prediction test of a positive quantity (latency, cost) on log scale."""

    runs: int
    observed: float
    baseline_mean: float
    """Geometric mean of the baseline values."""
    ratio: float
    """``observed / baseline_mean``."""
    p_value: float


LOG_SD_FLOOR = 0.05
"""Day-to-day spread assumed at least 5 % on log scale: a perfectly steady baseline
(simulated or cached) would otherwise make any wobble significant."""


def log_rule(baseline: Sequence[float], observed: float) -> LogRule | None:
    """P(a stable run would be this much higher) from a t prediction on ``log`` values.

    None when a value is not positive or there are fewer than two baseline runs.
    """
    values = [v for v in baseline if v > 0]
    if len(values) < 2 or observed <= 0:
        return None
    logs = [math.log(v) for v in values]
    runs = len(logs)
    mean = math.fsum(logs) / runs
    sd = max(math.sqrt(_var(logs) * runs / (runs - 1)), LOG_SD_FLOOR)
    t = (math.log(observed) - mean) / (sd * math.sqrt(1.0 + 1.0 / runs))
    return LogRule(
        runs=runs,
        observed=observed,
        baseline_mean=math.exp(mean),
        ratio=observed / math.exp(mean),
        p_value=t_sf(t, runs - 1),
    )


def _var(values: Sequence[float]) -> float:
    """Population variance (ddof 0)."""
    if not values:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / len(values)
