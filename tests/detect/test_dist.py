"""detect.dist returns what scipy.stats returns, bit for bit, edge cases included."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

from routewatch.detect.dist import (
    binomtest_greater,
    hypergeom_pmf,
    norm_cdf,
    norm_sf,
    poisson_binom_at,
    t_isf,
    t_sf,
)

EDGES = [0.0, -0.0, 1e-300, -1e-300, np.inf, -np.inf, np.nan]
X = [*np.linspace(-40.0, 40.0, 321).tolist(), *EDGES, 1.959963984540054, -8.3, 38.5]
DF = [1, 2, 3, 4, 6, 13, 27, 100, 1e6]
"""``runs - 1`` of a baseline (up to ``item_history_runs``), and far beyond."""
Q = [0.0, 1e-300, 1e-100, 1e-30, 1e-12, 1e-6, 0.0013, 0.0228, 0.05, 0.5, 0.9, 1 - 1e-16, 1.0]
Q_BAD = [-0.1, 1.1, np.nan]


def bits(values: object) -> bytes:
    """The float64 bytes: equal bits, so -0.0 differs from 0.0 and nan equals nan."""
    return np.asarray(values, dtype=np.float64).tobytes()


def test_norm_cdf_and_sf_equal_scipy() -> None:
    ours = [(norm_cdf(x), norm_sf(x)) for x in X]

    assert bits(ours) == bits([(stats.norm.cdf(x), stats.norm.sf(x)) for x in X])


@pytest.mark.parametrize("df", DF)
def test_t_sf_equals_scipy(df: float) -> None:
    assert bits([t_sf(x, df) for x in X]) == bits([stats.t.sf(x, df) for x in X])


@pytest.mark.parametrize("df", [*DF, 0.5])
def test_t_isf_equals_scipy_at_the_ends_and_in_tiny_tails(df: float) -> None:
    tails = [*Q, *Q_BAD, *(norm_sf(s) for s in np.linspace(0.0, 12.0, 49))]

    assert bits([t_isf(q, df) for q in tails]) == bits([stats.t.isf(q, df) for q in tails])


@pytest.mark.parametrize("df", [0, -1, np.nan])
def test_t_functions_give_nan_for_a_bad_df_as_scipy(df: float) -> None:
    assert bits([t_sf(1.0, df), t_isf(0.1, df)]) == bits(
        [stats.t.sf(1.0, df), stats.t.isf(0.1, df)]
    )


@pytest.mark.parametrize("n", [1, 2, 5, 20, 200, 1000, 3000])
def test_binomtest_greater_equals_scipy_for_every_count(n: int) -> None:
    rates = [0.0, 1e-9, 0.5 / (n + 1.0), 3.5 / 1401.0, 0.02, 0.5, 0.97, 1.0]
    counts = sorted({*range(min(n, 60) + 1), *np.linspace(0, n, 41).astype(int).tolist()})
    cases = [(k, p) for p in rates for k in counts]

    ours = [binomtest_greater(k, n, p) for k, p in cases]

    assert bits(ours) == bits(
        [stats.binomtest(k, n, p, alternative="greater").pvalue for k, p in cases]
    )


@pytest.mark.parametrize(("k", "n", "p"), [(3, 2, 0.1), (-1, 5, 0.1), (0, 0, 0.1), (1, 5, 1.5)])
def test_binomtest_greater_refuses_what_scipy_refuses(k: int, n: int, p: float) -> None:
    with pytest.raises(ValueError, match="binomtest"):
        binomtest_greater(k, n, p)
    with pytest.raises(ValueError):  # noqa: PT011 - scipy words each refusal its own way
        stats.binomtest(k, n, p, alternative="greater")


def test_hypergeom_pmf_equals_scipy_on_the_paired_tests_grid() -> None:
    """The shape ``paired`` uses: counts j in columns, one item's history per row."""
    rng = np.random.default_rng(3)
    draws = rng.integers(1, 6, 400).astype(float)
    size = draws + rng.integers(0, 120, 400)
    passed = np.floor(rng.random(400) * (size + 1))
    passed[:20], passed[20:40] = 0, size[20:40]  # all failed, all passed
    j = np.arange(7, dtype=np.float64)[None, :]
    args = (j, size[:, None], passed[:, None], draws[:, None])

    ours = hypergeom_pmf(*args)

    assert ours.shape == (400, 7)
    assert bits(ours) == bits(stats.hypergeom.pmf(*args))


@pytest.mark.parametrize(
    ("k", "total", "good", "draws"),
    [
        (2.0, 10, 4, 3),  # inside
        (0.0, 10, 10, 3),  # below the support: all good
        (3.0, 10, 0, 3),  # above it: none good
        (1.5, 10, 4, 3),  # not an integer
        (-1.0, 10, 4, 3),
        (np.nan, 10, 4, 3),
        (1.0, 10, 11, 3),  # more good than total
        (1.0, 10, 4, 11),  # more drawn than total
        (0.0, 0, 0, 0),  # nothing at all
        (1.0, 10.5, 4, 3),  # a non-integer shape
        (5.0, 1e6, 5e5, 10),
    ],
)
def test_hypergeom_pmf_edges_equal_scipy(k: float, total: float, good: float, draws: float) -> None:
    assert bits(hypergeom_pmf(k, total, good, draws)) == bits(
        stats.hypergeom.pmf(k, total, good, draws)
    )


def _scipy_poisson_binom(k: float, p: np.ndarray) -> list[float]:
    return [float(stats.poisson_binom.cdf(k, p)), float(stats.poisson_binom.pmf(k, p))]


def test_poisson_binom_equals_scipy_on_cet_like_rates() -> None:
    """``pi = (c + x) / (m + 1)`` as ``cet`` builds it, 1 to 500 items, mostly passing."""
    rng = np.random.default_rng(11)
    ours, theirs = [], []
    for n in [1, 2, 3, *rng.integers(4, 500, 60).tolist()]:
        m = rng.integers(1, 29, n)
        c = rng.binomial(m, rng.beta(0.85, 0.15, n))
        pi = (c + rng.integers(0, 2, n)) / (m + 1.0)
        for k in {0.0, float(n), float(rng.integers(0, n + 1)), float(round(pi.sum()))}:
            ours.append(list(poisson_binom_at(k, pi)))
            theirs.append(_scipy_poisson_binom(k, pi))

    assert bits(ours) == bits(theirs)


def test_poisson_binom_equals_scipy_for_uniform_and_certain_rates() -> None:
    rng = np.random.default_rng(5)
    cases = [rng.random(300), rng.choice([0.0, 1.0, 0.5, 1e-9, 1 - 1e-9], 300), np.ones(40)]
    cases += [np.zeros(40), 1 - rng.random(300) ** 8]
    ks = [0.0, 1.0, 17.0, 39.0, 40.0, 150.0, 299.0, 300.0]

    ours = [list(poisson_binom_at(k, p)) for p in cases for k in ks]

    assert bits(ours) == bits([_scipy_poisson_binom(k, p) for p in cases for k in ks])


@pytest.mark.parametrize("k", [-1.0, 2.5, 5.0, 6.0, np.inf, -np.inf, np.nan])
def test_poisson_binom_off_the_support_equals_scipy(k: float) -> None:
    p = np.array([0.2, 0.9, 0.5, 0.7, 0.99])

    assert bits(list(poisson_binom_at(k, p))) == bits(_scipy_poisson_binom(k, p))


def test_poisson_binom_with_a_rate_outside_0_1_is_nan_as_in_scipy() -> None:
    p = np.array([0.2, 1.5, 0.5])

    assert bits(list(poisson_binom_at(1.0, p))) == bits(_scipy_poisson_binom(1.0, p))


def test_without_scipys_private_kernels_the_functions_fall_back_to_scipy_stats() -> None:
    code = textwrap.dedent(
        """
        from scipy.special import _ufuncs
        kernels = _ufuncs._binom_sf, _ufuncs._hypergeom_pmf
        del _ufuncs._binom_sf, _ufuncs._hypergeom_pmf
        from routewatch.detect import dist
        # scipy.stats itself needs them back.
        _ufuncs._binom_sf, _ufuncs._hypergeom_pmf = kernels
        from scipy import stats
        assert dist._BINOM_SF is None and dist._HYPERGEOM_PMF is None
        print(dist.binomtest_greater(3, 20, 0.05)
              == stats.binomtest(3, 20, 0.05, alternative="greater").pvalue,
              (dist.hypergeom_pmf([0, 1, 2], 10, 4, 2)
               == stats.hypergeom.pmf([0, 1, 2], 10, 4, 2)).all())
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.split() == ["True", "True"]


def test_every_detector_runs_without_importing_scipy_stats() -> None:
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from routewatch.detect import findings, paired, sigma
        from routewatch.detect.dist import binomtest_greater

        rng = np.random.default_rng(0)
        c, m = rng.integers(0, 15, 50), np.full(50, 14)
        paired.binary_test(c, m, rng.integers(0, 2, 50))
        paired.binary_test(2 * c, 2 * m, rng.integers(0, 3, 50), 2)
        paired.graded_test([rng.random(14) for _ in range(50)], np.zeros(50))
        sigma.sigma_rule(rng.random(14).tolist(), 0.1, sigma=2.0, mode=sigma.SigmaMode.prediction)
        sigma.log_rule((rng.random(14) + 1).tolist(), 9.0)
        binomtest_greater(12, 200, 0.01)
        print(sorted(m for m in sys.modules if m.startswith("scipy.stats")))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"
