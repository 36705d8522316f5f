from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from routewatch.detect import paired
from routewatch.detect.paired import binary_test, cet, cetw, graded_test, pooled


def test_cet_with_one_baseline_run_is_the_exact_mcnemar_test() -> None:
    """With B = 1 only discordant items are free: a binomial on pass->fail vs fail->pass."""
    base = np.array([1] * 30 + [0] * 5 + [1] * 6 + [0] * 2)
    today = np.array([1] * 30 + [0] * 5 + [0] * 6 + [1] * 2)

    p, _ = cet(base, np.ones_like(base), today)

    mcnemar = stats.binomtest(6, 8, 0.5, alternative="greater").pvalue
    assert p == pytest.approx(mcnemar)


def _null_runs(rng: np.random.Generator, runs: int, n: int = 60, b: int = 14):
    for _ in range(runs):
        p = rng.beta(0.85, 0.15, n)
        hist = rng.random((b + 1, n)) < p
        yield hist[:b].sum(0), np.full(n, b), hist[b].astype(float)


def test_cet_and_cetw_p_values_are_super_uniform_on_stable_routes() -> None:
    rng = np.random.default_rng(7)
    tests = [binary_test(c, m, x) for c, m, x in _null_runs(rng, 1500)]
    se = (0.05 * 0.95 / len(tests)) ** 0.5

    assert np.mean([t.p_cet <= 0.05 for t in tests]) <= 0.05 + 3 * se
    assert np.mean([t.p_cetw <= 0.05 for t in tests]) <= 0.05 + 3 * se


def test_cetw_matches_a_monte_carlo_of_its_null() -> None:
    rng = np.random.default_rng(3)
    c, m, x = next(_null_runs(rng, 1, n=80))
    x[:4] = 0  # a few items break
    pi = (c + x) / (m + 1)
    free = (pi > 0) & (pi < 1)

    p = cetw(c, m, x)

    # Monte Carlo of the same lattice statistic: redraw today's outcomes given totals.
    draws = rng.random((100_000, free.sum())) < pi[free]
    exact_t = _lattice_t(c, m, x)
    sim_t = np.array([_lattice_t(c, m, _fill(x, free, d)) for d in draws[:4000]])
    assert p == pytest.approx(np.mean(sim_t >= exact_t - 1e-9), abs=0.02)


def _fill(x: np.ndarray, free: np.ndarray, draw: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[free] = draw
    return out


def _lattice_t(c: np.ndarray, m: np.ndarray, x_null: np.ndarray) -> float:
    # Recompute the failure-weighted statistic with the weights of the observed run.
    return float(((1 - x_null) * _weights(c, m, x_null)).sum())


def _weights(c, m, x):
    return np.where((c + x) / (m + 1) < 1, -np.log1p(-(c + 0.5) / (m + 1)), 0.0)


def test_a_failure_of_a_reliable_item_weighs_more_than_of_a_flaky_one() -> None:
    trials = np.full(100, 14)
    passes = np.where(np.arange(100) < 50, 14, 7)  # 50 reliable items, 50 coin flips
    usual = np.where(np.arange(100) < 50, 1.0, np.arange(100) % 2)  # flaky: half pass
    reliable_fail = usual.copy()
    reliable_fail[:3] = 0
    flaky_fail = usual.copy()
    flaky_fail[[51, 53, 55]] = 0

    assert cetw(passes, trials, reliable_fail) < 0.01
    assert cetw(passes, trials, flaky_fail) > 0.1


def test_pooled_matches_a_monte_carlo_of_its_null() -> None:
    """Redraw today's outcomes given each item's total; the weights stay those totals'."""
    rng = np.random.default_rng(4)
    c, m, x = next(_null_runs(rng, 1, n=80, b=28))
    x[:3] = 0
    pi = (c + x) / (m + 1)

    p = pooled(c, m, x)

    draws = (rng.random((20_000, x.size)) < pi).astype(float)
    plain = np.mean((1 - draws).sum(1) >= (1 - x).sum())
    below = np.mean((1 - draws).sum(1) > (1 - x).sum())
    # A weighted count: its tail lies between the plain count's strict and weak tails.
    assert below - 0.01 <= p <= plain + 0.01


def test_pooled_spends_its_level_where_the_plain_count_cannot() -> None:
    """The count is an integer, so its exact test is conservative; the pooled test's
    small bonuses break ties and bring its size close to the nominal level."""
    rng = np.random.default_rng(12)
    runs = list(_null_runs(rng, 2000, n=60, b=28))

    size_pooled = np.mean([pooled(c, m, x) <= 0.02 for c, m, x in runs])
    size_count = np.mean([cet(c, m, x)[0] <= 0.02 for c, m, x in runs])

    assert size_count < size_pooled <= 0.02 + 3 * (0.02 * 0.98 / len(runs)) ** 0.5


def test_a_failure_of_a_reliable_item_weighs_a_little_more_in_the_pooled_test() -> None:
    trials = np.full(100, 28)
    passes = np.where(np.arange(100) < 50, 28, 20)
    usual = np.where(np.arange(100) < 50, 1.0, (np.arange(100) % 4 != 0).astype(float))
    reliable_fail, flaky_fail = usual.copy(), usual.copy()
    reliable_fail[:2] = 0
    flaky_fail[[51, 53]] = 0

    assert pooled(passes, trials, reliable_fail) < pooled(passes, trials, flaky_fail)


def test_k_samples_per_item_use_the_hypergeometric_null() -> None:
    """Two samples per item: pass counts 0..2 today against 28 baseline samples."""
    rng = np.random.default_rng(5)
    p = rng.beta(0.85, 0.15, 40)
    c = rng.binomial(28, p)
    today = rng.binomial(2, p)
    today[:5] = 0

    p_drop, _ = cet(c, np.full(40, 28), today, 2)
    p_same, _ = cet(c, np.full(40, 28), rng.binomial(2, p), 2)

    assert p_drop < 0.05 < p_same


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_item_order_does_not_change_the_p_values(data: st.DataObject) -> None:
    n = data.draw(st.integers(5, 40))
    c = np.array(data.draw(st.lists(st.integers(0, 10), min_size=n, max_size=n)))
    x = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    order = np.array(data.draw(st.permutations(range(n))))
    m = np.full(n, 10)

    a, b = binary_test(c, m, x), binary_test(c[order], m[order], x[order])

    assert (a.p_cet, a.p_cetw) == pytest.approx((b.p_cet, b.p_cetw), rel=1e-6)


def test_graded_test_finds_a_drop_and_not_noise() -> None:
    rng = np.random.default_rng(9)
    means = rng.uniform(0.5, 0.9, 80)
    history = [np.clip(mu + rng.normal(0, 0.05, 14), 0, 1) for mu in means]

    dropped = graded_test(history, np.clip(means - 0.1, 0, 1), seed=1)
    same = graded_test(history, np.clip(means + rng.normal(0, 0.05, 80), 0, 1), seed=1)

    assert dropped.p_value < 0.001
    assert dropped.drop == pytest.approx(0.1, abs=0.02)
    assert same.p_value > 0.01


def _failure_tail_by_stratum(total, size, draws, today, steps) -> float:
    """``_failure_tail`` as first written: one stratum at a time, ``np.unique`` strata."""
    free = (total > 0) & (total < size)
    if not free.any():
        return 1.0
    total, size, draws, today, steps = (a[free] for a in (total, size, draws, today, steps))
    observed = int(((draws - today) * steps).sum())
    keys = np.stack([total, size, draws, steps], axis=1)
    strata, counts = np.unique(keys, axis=0, return_counts=True)
    if np.all(strata[:, 2] == 1):
        share = strata[:, 0] / strata[:, 1]
        pmfs = np.stack([1.0 - share, share], axis=1)
    else:
        pmfs = paired._hypergeom_pmfs(strata[:, 0], strata[:, 1], strata[:, 2])
    size_fft = 1 << max(4, int((counts * strata[:, 2] * strata[:, 3]).sum()).bit_length())
    roots = np.exp(-2j * np.pi * np.arange(size_fft) / size_fft)
    j = np.arange(size_fft // 2 + 1)
    log_cf = np.zeros(j.shape, dtype=np.complex128)
    zero = np.zeros(j.shape, dtype=bool)
    for (_, _, n_draws, step), count, pmf in zip(strata, counts, pmfs, strict=True):
        cf = np.zeros(j.shape, dtype=np.complex128)
        for passed, weight in enumerate(pmf):
            if weight > 0:
                cf += weight * roots[(j * int((n_draws - passed) * step)) % size_fft]
        small = np.abs(cf) < 1e-300
        zero |= small
        log_cf += count * np.log(np.where(small, 1.0, cf))
    dist = np.clip(np.fft.irfft(np.where(zero, 0.0, np.exp(log_cf)), size_fft), 0.0, None)
    return float(min(1.0, dist[observed:].sum() / dist.sum()))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_blocked_failure_tail_is_bit_for_bit_the_stratum_by_stratum_one(
    data: st.DataObject,
) -> None:
    """Computing strata's characteristic functions at once, and keeping them from one
    call to the next, changes no p-value: one sample per item first, then a mix."""
    n = data.draw(st.integers(1, 120))
    samples = data.draw(st.sampled_from([1, 2, 3]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    size = rng.integers(samples + 1, 40, n).astype(float)
    draws = rng.integers(1, samples + 1, n).astype(float)
    total = np.minimum(rng.integers(0, 40, n), size).astype(float)
    today = np.minimum(rng.integers(0, samples + 1, n), draws).astype(float)
    steps = rng.integers(1, 33, n).astype(float)
    block = data.draw(st.sampled_from([1, 300, paired.CF_BLOCK]))
    ones, passed_one = np.ones(n), np.minimum(today, 1.0)
    paired._LOG_CF.clear()

    one = paired._failure_tail(total, size, ones, passed_one, steps, block=block)
    computed = paired._failure_tail(total, size, draws, today, steps, block=block)
    cached = paired._failure_tail(total, size, draws, today, steps, block=block)

    assert one == _failure_tail_by_stratum(total, size, ones, passed_one, steps)
    assert computed == cached == _failure_tail_by_stratum(total, size, draws, today, steps)


def test_the_log_cf_cache_keeps_the_most_recent_strata_within_its_bytes() -> None:
    cache = paired._LogCfCache(max_bytes=3 * (16 + 1) * 10)
    for key in range(5):
        cache.put((float(key),), np.full(10, key, dtype=np.complex128), np.zeros(10, bool))
    cache.get((2.0,))

    cache.put((5.0,), np.zeros(10, dtype=np.complex128), np.zeros(10, bool))

    assert [k for k in range(6) if cache.get((float(k),)) is not None] == [2, 4, 5]
    log_cf, _ = cache.get((4.0,)) or pytest.fail("kept")
    assert not log_cf.flags.writeable


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.sampled_from([0.0, 0.5, 1.0, 28.0])] * 4), min_size=1))
def test_strata_are_numpys_unique_rows_with_their_counts(rows: list[tuple[float, ...]]) -> None:
    keys = np.array(rows)

    strata, counts = paired._strata(keys)

    want_strata, want_counts = np.unique(keys, axis=0, return_counts=True)
    assert np.array_equal(strata, want_strata)
    assert np.array_equal(counts, want_counts)
