"""PURE: paired per-item tests of today's run against each item's own history.

The eval set is fixed, so the same items are scored every run and each item can be
compared with itself. Under "nothing changed" an item's baseline outcomes and today's
are exchangeable; conditioning on the item's total makes today's outcome a uniform
draw from them (STATISTICS.md section 3.3). That gives exact tests:

- ``cet``: the count of today's passes against its Poisson-binomial (or, with K samples
  per item, sum-of-hypergeometric) null. Its mid-p feeds the CUSUM.
- ``pooled``: the count test that pages. Each failure weighs about the same, with a small
  bonus for items that rarely fail, so the null is close to continuous and the exact
  test spends its whole budget (the plain count spends about two thirds of it, being
  an integer). Near-optimal for diffuse drops, where every item is a little worse.
- ``cetw``: a failure-weighted likelihood ratio for "some items broke", with an exact
  null computed on an integer lattice. Near-optimal for concentrated drops.
- ``graded``: today's item scores against uniform picks from each item's own values.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from routewatch.detect.dist import hypergeom_pmf, norm_cdf, poisson_binom_at

FloatArray = npt.NDArray[np.float64]

LATTICE_STEPS = 32
"""Integer steps given to the heaviest item weight in ``cetw``. The statistic is defined
on the rounded weights and its null is exact for them, so rounding costs a little power
and never validity; 32 keeps the lattice (and its FFT) to ``32 * n * K`` points."""

POOLED_STEPS = 16
"""Lattice steps of one failure in ``pooled``, before its surprise bonus."""
POOLED_BONUS = 8
"""Extra steps for the most surprising failure in ``pooled`` (others in proportion).
Under a diffuse drop (one logit shift for every item) the plain count is the optimal
statistic, so the bonus is kept small: it mainly breaks the count's ties, which turns
the exact test's slack into power (a 5-point diffuse drop on a mixed route at 200
items, 700 simulated routes, the old shares of the budget: 0.31 to 0.34 of drops caught;
bonuses of 1 to 16 steps did about equally well, 32 and 64 worse)."""
POOLED_SHRINK = 2.0
"""Pseudo-runs at the route's mean pass rate added to each item's history when rating
how surprising a failure is, so an item with three passing runs of history does not
yet count as one that never fails."""

CF_BLOCK = 1 << 16
"""Complex values computed at once in ``_failure_tail`` (strata x lattice frequencies):
large enough that small routes take one block, small enough to bound the memory of a
large eval set."""
LOG_CF_CACHE_BYTES = 32 << 20
"""Memory kept for the log characteristic functions of recent strata. A route's strata
(an item's passes and results, its draws today and its lattice weight) mostly recur from
one run to the next, and their complex logs are most of ``_failure_tail``'s work: on
daily runs of a 50-item route nine strata in ten are found here."""

GRADED_MC_DRAWS = 40_000
"""Monte Carlo picks that refine a graded p-value once the normal approximation says it
is small; the count bounds the p-value's resolution near the paging threshold."""
GRADED_MC_BELOW = 0.05
"""Normal-approximation p-values above this are reported as is: far from any threshold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryTest:
    """The exact paired test of pass counts."""

    items: int
    """Items that entered the test (enough history, not errored today)."""
    p_cet: float
    """The pooled count test's p-value (``pooled``): exact under the null."""
    p_mid: float
    """The mid-p of the plain count (``cet``); the input of the CUSUM."""
    p_cetw: float
    """P(weighted failures >= today's) under the null; 1.0 when not computed."""
    drop: float
    """Mean over items of (baseline pass rate - today's pass rate): the effect size."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GradedTest:
    """The paired test of graded item scores."""

    items: int
    p_value: float
    drop: float
    """Mean over items of (baseline mean score - today's score)."""


def _as_float(values: object) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _hypergeom_pmfs(total: FloatArray, trials: FloatArray, draws: FloatArray) -> FloatArray:
    """Row i: P(today's passes = j), j = 0..max(draws), under the conditional null."""
    width = int(draws.max()) + 1
    j = np.arange(width, dtype=np.float64)
    pmf = hypergeom_pmf(j[None, :], trials[:, None], total[:, None], draws[:, None])
    return np.where(j[None, :] <= draws[:, None], np.nan_to_num(pmf), 0.0)


def cet(passes: object, trials: object, today: object, samples: object = 1) -> tuple[float, float]:
    """The conditional exchangeability test of today's pass count.

    Args:
        passes: Per item, baseline passes ``c_i``.
        trials: Per item, baseline results ``m_i`` (samples counted one by one).
        today: Per item, today's passes ``x_i`` (0..samples).
        samples: Per item (or one for all), today's scored samples ``k_i``.

    Returns:
        ``(p, mid_p)``: P(Y <= X) and P(Y < X) + P(Y = X) / 2 under the null.
    """
    c, m, x, k = _counts(passes, trials, today, samples)
    if x.size == 0:
        return 1.0, 1.0
    observed = float(x.sum())
    if np.all(k == 1):
        pi = (c + x) / (m + 1.0)
        cdf, pmf = poisson_binom_at(observed, pi)
        return min(1.0, cdf), min(1.0, max(0.0, cdf - 0.5 * pmf))
    dist = np.ones(1)
    for row in _hypergeom_pmfs(c + x, m + k, k):
        dist = np.convolve(dist, row)
    at = round(observed)
    cdf = float(dist[: at + 1].sum())
    return min(1.0, cdf), min(1.0, max(0.0, cdf - 0.5 * float(dist[at])))


def cetw(
    passes: object,
    trials: object,
    today: object,
    samples: object = 1,
    *,
    design_drop: float = 0.05,
    broken_factor: float = 0.1,
) -> float:
    """The failure-weighted conditional test for "some items broke".

    A failure of an item that nearly always passed weighs far more than one more failure
    of a flaky item: the weights are the log likelihood ratio of "each item broke with
    probability f, its pass rate times ``broken_factor``" (STATISTICS.md 3.3), with f set
    so the expected drop is ``design_drop``.

    Returns:
        P(T >= t) under the null, computed exactly on the lattice of rounded weights.
    """
    c, m, x, k = _counts(passes, trials, today, samples)
    if x.size == 0 or m.sum() <= 0:
        return 1.0
    pi = (c + x) / (m + k)
    base_rate = max(float(c.sum() / m.sum()), 1e-9)
    f = min(0.5, design_drop / ((1.0 - broken_factor) * base_rate))
    l_pass = math.log1p(f * (broken_factor - 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        l_fail = np.log1p(f * ((1.0 - broken_factor * pi) / (1.0 - pi) - 1.0))
    weight = l_fail - l_pass
    # Items that all passed or all failed (today included) are fixed by the conditioning.
    free = (pi > 0) & (pi < 1)
    if not free.any():
        return 1.0
    unit = float(weight[free].max()) / LATTICE_STEPS
    steps = np.maximum(np.rint(np.where(free, weight, 0.0) / unit), 1.0)
    return _failure_tail(c + x, m + k, k, x, steps)


def pooled(passes: object, trials: object, today: object, samples: object = 1) -> float:
    """The count test with a surprise bonus: the one that pages on diffuse drops.

    The statistic is a weighted sum of today's failures, ``sum_i w_i (k_i - x_i)``,
    that is a weighted sum of each item's residual against its own rate. Every weight
    is ``POOLED_STEPS`` plus up to ``POOLED_BONUS`` steps for how surprising the item's
    failure is: ``-log(1 - rate)``, with the rate shrunk toward the route's mean by
    ``POOLED_SHRINK`` pseudo-runs. Weights and shrinkage depend on each item's total
    passes today included, which the conditional null holds fixed, so the test stays
    exact (STATISTICS.md 3.3).

    Returns:
        P(T >= t) under the null, computed exactly on the integer lattice of weights.
    """
    c, m, x, k = _counts(passes, trials, today, samples)
    if x.size == 0 or m.sum() <= 0:
        return 1.0
    total, size = c + x, m + k
    free = (total > 0) & (total < size)
    if not free.any():
        return 1.0
    mean = float(total.sum() / size.sum())
    rate = (total + POOLED_SHRINK * mean + 0.5) / (size + POOLED_SHRINK + 1.0)
    surprise = -np.log1p(-rate)
    top = float(surprise[free].max())
    bonus = np.rint(POOLED_BONUS * surprise / top) if top > 0 else np.zeros_like(surprise)
    return _failure_tail(total, size, k, x, POOLED_STEPS + bonus)


def _counts(
    passes: object, trials: object, today: object, samples: object
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The tests' inputs as float arrays, ``samples`` broadcast to one per item."""
    c, m, x = _as_float(passes), _as_float(trials), _as_float(today)
    return c, m, x, np.broadcast_to(_as_float(samples), x.shape).astype(np.float64)


def _failure_tail(
    total: FloatArray,
    size: FloatArray,
    draws: FloatArray,
    today: FloatArray,
    steps: FloatArray,
    *,
    block: int = CF_BLOCK,
) -> float:
    """P(sum_i steps_i * (draws_i - X_i) >= today's) under the conditional null.

    ``X_i`` is hypergeometric: ``draws_i`` of the item's ``size_i`` results, ``total_i``
    of which passed (Bernoulli with ``total_i / size_i`` when ``draws_i`` is 1). Items
    whose results all passed or all failed are fixed and left out. ``block`` bounds the
    complex values computed at once; it changes no bit of the result.
    """
    free = (total > 0) & (total < size)
    if not free.any():
        return 1.0
    total, size, draws, today = total[free], size[free], draws[free], today[free]
    steps = steps[free]
    observed = int(((draws - today) * steps).sum())
    strata, counts = _strata(np.stack([total, size, draws, steps], axis=1))
    bernoulli = bool(np.all(strata[:, 2] == 1))
    if bernoulli:
        share = strata[:, 0] / strata[:, 1]
        pmfs = np.stack([1.0 - share, share], axis=1)
    else:
        pmfs = _hypergeom_pmfs(strata[:, 0], strata[:, 1], strata[:, 2])
    support = int((counts * strata[:, 2] * strata[:, 3]).sum())
    size_fft = 1 << max(4, support.bit_length())
    # The null's characteristic function on the FFT grid: a product over strata of
    # (sum_f pmf(f) * w^(f * step))^count, with w the size-th roots of unity.
    roots = _roots_of_unity(size_fft)
    j = np.arange(size_fft // 2 + 1)
    # A stratum's pmf comes out of either formula a hair apart: each has its own keys.
    keys = [(size_fft, bernoulli, *row) for row in strata.tolist()]
    cached = [_LOG_CF.get(key) for key in keys]
    missing = np.array([i for i, c in enumerate(cached) if c is None], dtype=np.int64)
    computed = {}
    rows = max(1, block // j.size)
    for start in range(0, missing.size, rows):
        part = missing[start : start + rows]
        cf = _strata_cf(strata[part, 2], strata[part, 3], pmfs[part], roots, j)
        small = np.abs(cf) < 1e-300
        logs = np.log(np.where(small, 1.0, cf))
        for i, log_row, small_row in zip(part.tolist(), logs, small, strict=True):
            computed[i] = _LOG_CF.put(keys[i], log_row.copy(), small_row.copy())
    log_cf = np.zeros(j.shape, dtype=np.complex128)
    zero = np.zeros(j.shape, dtype=bool)
    # Stratum after stratum, so the sum (and the p-value) depends on no block or cache.
    for i, count in enumerate(counts):
        log_row, small_row = cached[i] or computed[i]
        zero |= small_row
        log_cf += count * log_row
    cf_total = np.where(zero, 0.0, np.exp(log_cf))
    dist = np.clip(np.fft.irfft(cf_total, size_fft), 0.0, None)
    return float(min(1.0, dist[observed:].sum() / dist.sum()))


def _strata(keys: FloatArray) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """The distinct rows of ``keys`` in lexicographic order, and how often each occurs.

    Identical items (same null pmf of today's passes, same weight) form one stratum.
    The same as ``np.unique(keys, axis=0, return_counts=True)``, at half its cost.
    """
    rows = keys[np.lexsort(keys.T[::-1])]
    first = np.ones(len(rows), dtype=bool)
    np.any(rows[1:] != rows[:-1], axis=1, out=first[1:])
    starts = np.flatnonzero(first)
    return rows[starts], np.diff(np.append(starts, len(rows)))


ComplexArray = npt.NDArray[np.complex128]
BoolArray = npt.NDArray[np.bool_]


class _LogCfCache:
    """Strata's ``log(cf)`` on the FFT grid, and where ``cf`` is 0, by stratum and grid.

    The least recently used go once ``max_bytes`` is passed. Values are read-only and
    computed as without the cache, so a p-value is the same bit for bit, hit or miss.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[tuple[float, ...], tuple[ComplexArray, BoolArray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[float, ...]) -> tuple[ComplexArray, BoolArray] | None:
        with self._lock:
            found = self._rows.get(key)
            if found is not None:
                self._rows.move_to_end(key)
            return found

    def put(
        self, key: tuple[float, ...], log_cf: ComplexArray, zero: BoolArray
    ) -> tuple[ComplexArray, BoolArray]:
        log_cf.flags.writeable = False
        zero.flags.writeable = False
        value = (log_cf, zero)
        size = log_cf.nbytes + zero.nbytes
        with self._lock:
            if size <= self.max_bytes and key not in self._rows:
                self._rows[key] = value
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (old_log, old_zero) = self._rows.popitem(last=False)
                    self._bytes -= old_log.nbytes + old_zero.nbytes
        return value

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._bytes = 0


_LOG_CF = _LogCfCache(LOG_CF_CACHE_BYTES)


@functools.lru_cache(maxsize=4)
def _roots_of_unity(size: int) -> npt.NDArray[np.complex128]:
    """``exp(-2 pi i k / size)`` for k = 0..size-1 (read-only: it is shared)."""
    roots: npt.NDArray[np.complex128] = np.exp(-2j * np.pi * np.arange(size) / size)
    roots.flags.writeable = False
    return roots


def _strata_cf(
    draws: FloatArray,
    steps: FloatArray,
    pmfs: FloatArray,
    roots: npt.NDArray[np.complex128],
    j: npt.NDArray[np.int64],
) -> npt.NDArray[np.complex128]:
    """Row s: ``sum_f pmf_s(f) * roots[j * (draws_s - f) * steps_s]``, a stratum's cf.

    Terms are added in the order of ``f`` and only where ``pmf_s(f) > 0``, so each row
    equals, bit for bit, the sum taken one stratum at a time.
    """
    cf = np.zeros((len(draws), j.size), dtype=np.complex128)
    for passed in range(pmfs.shape[1]):
        weight = pmfs[:, passed]
        use = weight > 0
        if not use.any():
            continue
        shift = ((draws - passed) * steps).astype(np.int64)
        term = weight[:, None] * roots[(j[None, :] * shift[:, None]) % roots.size]
        if use.all():
            cf += term
        else:
            np.add(cf, term, out=cf, where=use[:, None])
    return cf


def binary_test(
    passes: object,
    trials: object,
    today: object,
    samples: object = 1,
    *,
    design_drop: float = 0.05,
    weighted: bool = True,
) -> BinaryTest:
    """The paired tests of pass counts on the same items.

    The pooled count test, the plain count's mid-p (for the CUSUM) and, unless
    ``weighted`` is False, CETW.
    """
    c, m, x, k = _counts(passes, trials, today, samples)
    _, mid = cet(c, m, x, k)
    p = pooled(c, m, x, k)
    p_w = cetw(c, m, x, k, design_drop=design_drop) if weighted else 1.0
    drop = float(np.mean(c / m - x / k)) if x.size else 0.0
    return BinaryTest(items=int(x.size), p_cet=p, p_mid=mid, p_cetw=p_w, drop=drop)


def graded_test(
    history: list[FloatArray], today: object, *, seed: int = 0, draws: int = GRADED_MC_DRAWS
) -> GradedTest:
    """A stratified permutation test of graded scores (STATISTICS.md 3.4).

    ``D = sum_i (y_i - mean_i)`` where ``mean_i`` averages the item's baseline values and
    today's; under the null today's value is a uniform pick among them. A normal
    approximation answers when it is far from significance; below ``GRADED_MC_BELOW``
    a seeded Monte Carlo over the picks gives the reported p-value.

    Args:
        history: Per item, its baseline scores.
        today: Per item, today's score.
        seed: Seeds the Monte Carlo, so a stored p-value can be reproduced.
        draws: Monte Carlo draws.
    """
    y = _as_float(today)
    if y.size == 0:
        return GradedTest(items=0, p_value=1.0, drop=0.0)
    pools = [np.append(h, v) for h, v in zip(history, y, strict=True)]
    means = np.array([p.mean() for p in pools])
    variances = np.array([p.var() for p in pools])
    observed = float((y - means).sum())
    drop = float(np.mean([h.mean() for h in history]) - y.mean())
    sd = math.sqrt(float(variances.sum()))
    if sd <= 1e-12:
        return GradedTest(items=int(y.size), p_value=1.0, drop=drop)
    p_normal = norm_cdf((observed + 1e-9) / sd)
    if p_normal > GRADED_MC_BELOW:
        return GradedTest(items=int(y.size), p_value=p_normal, drop=drop)
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = 2_000
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        total = np.zeros(n)
        for pool, mean in zip(pools, means, strict=True):
            total += pool[rng.integers(0, pool.size, n)] - mean
        hits += int(np.count_nonzero(total <= observed + 1e-9))
    return GradedTest(items=int(y.size), p_value=(hits + 1) / (draws + 1), drop=drop)


def surprise(passes: float, trials: float, failed_today: bool) -> float:
    """How surprising today's failure of an item is: ``-log(1 - smoothed pass rate)``."""
    if not failed_today:
        return 0.0
    rate = (passes + 0.5) / (trials + 1.0)
    return -math.log(1.0 - rate)
