"""PURE: the distribution functions detection uses, without importing ``scipy.stats``.

``import scipy.stats`` takes about a second and 50 MB, and every ``run`` and ``serve``
paid it for a handful of functions. Each function here returns what the ``scipy.stats``
call named in its docstring returns, bit for bit: it calls the same ``scipy.special``
kernel and treats arguments at and outside the support the same way, and the Poisson
binomial runs scipy's recurrence in numpy. ``tests/detect/test_dist.py`` holds them to
the installed scipy. Should a scipy release drop the private kernels of the binomial
and the hypergeometric, those two fall back to ``scipy.stats``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]


def _private_kernel(name: str) -> Callable[..., Any] | None:
    """A ufunc of ``scipy.special._ufuncs`` that scipy.stats uses, or None if it moved."""
    try:
        module = importlib.import_module("scipy.special._ufuncs")
    except ImportError:
        return None
    found: Callable[..., Any] | None = getattr(module, name, None)
    return found


_BINOM_SF = _private_kernel("_binom_sf")
"""``binom._sf``'s kernel, ``(k, n, p)``."""
_HYPERGEOM_PMF = _private_kernel("_hypergeom_pmf")
"""``hypergeom._pmf``'s kernel, scipy's shape arguments reordered: ``(k, n, N, M)``."""


def norm_cdf(x: float) -> float:
    """``scipy.stats.norm.cdf(x)``: ``special.ndtr``, as ``norm._cdf`` computes it."""
    return float(special.ndtr(x))


def norm_sf(x: float) -> float:
    """``scipy.stats.norm.sf(x)``: ``ndtr(-x)``, as ``norm._sf`` computes it."""
    return float(special.ndtr(-x))


def t_sf(x: float, df: float) -> float:
    """``scipy.stats.t.sf(x, df)``: ``stdtr(df, -x)``, as ``t._sf`` computes it.

    The kernel already gives what ``rv_continuous.sf`` puts outside the open support
    (1 at ``-inf``, 0 at ``inf``) and for a bad ``df`` (nan).
    """
    return float(special.stdtr(df, -x))


def t_isf(q: float, df: float) -> float:
    """``scipy.stats.t.isf(q, df)``: ``-stdtrit(df, q)`` inside (0, 1), as ``t._isf``.

    ``rv_continuous.isf`` answers the ends itself (``stdtrit`` gives ``inf`` at both)
    and nan for ``q`` outside [0, 1] or ``df <= 0``.
    """
    if not df > 0 or not 0 <= q <= 1:
        return math.nan
    if q == 0:
        return math.inf
    if q == 1:
        return -math.inf
    # 0.0 - v rather than -v: scipy's `-v * scale + loc` turns -0.0 (at q = 0.5) into 0.0.
    return 0.0 - float(special.stdtrit(df, q))


def binomtest_greater(k: int, n: int, p: float) -> float:
    """``scipy.stats.binomtest(k, n, p, alternative="greater").pvalue``.

    That p-value is ``binom.sf(k - 1, n, p)``: 1 for ``k == 0``, else the clipped
    ``_binom_sf`` kernel. As in scipy, ``ValueError`` unless ``0 <= k <= n``,
    ``n >= 1`` and ``0 <= p <= 1``.
    """
    if n < 1 or not 0 <= k <= n or not 0 <= p <= 1:
        raise ValueError(f"binomtest needs 0 <= k <= n, n >= 1, 0 <= p <= 1: {k}, {n}, {p}")
    if _BINOM_SF is None:  # tested in a subprocess
        from scipy import stats

        return float(stats.binomtest(k, n, p, alternative="greater").pvalue)
    if k == 0:
        return 1.0
    return float(np.clip(_BINOM_SF(float(k - 1), float(n), float(p)), 0.0, 1.0))


def hypergeom_pmf(k: object, total: object, good: object, draws: object) -> FloatArray:
    """``scipy.stats.hypergeom.pmf(k, total, good, draws)``, broadcast as numpy does.

    ``draws`` of ``total`` objects, ``good`` of which are good: P(``k`` good drawn).
    As ``rv_discrete.pmf``: nan for impossible shapes (or a nan ``k``), 0 off the
    support or at a non-integer ``k``, else the clipped ``_hypergeom_pmf`` kernel.
    """
    k_, m, n, big_n = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (k, total, good, draws))
    )
    if _HYPERGEOM_PMF is None:  # tested in a subprocess
        from scipy import stats

        return np.asarray(stats.hypergeom.pmf(k_, m, n, big_n), dtype=np.float64)
    valid = (m > 0) & (n >= 0) & (big_n >= 0) & (n <= m) & (big_n <= m)
    valid &= (m == np.round(m)) & (n == np.round(n)) & (big_n == np.round(big_n))
    low, high = np.maximum(big_n - (m - n), 0), np.minimum(n, big_n)
    inside = valid & (k_ >= low) & (k_ <= high) & (np.floor(k_) == k_)
    out = np.zeros(k_.shape, dtype=np.float64)
    out[~valid | np.isnan(k_)] = np.nan
    if inside.any():
        pmf = _HYPERGEOM_PMF(k_[inside], n[inside], big_n[inside], m[inside])
        out[inside] = np.clip(pmf, 0.0, 1.0)
    return out


class CdfPmf(NamedTuple):
    """A discrete distribution's cdf and pmf at one point."""

    cdf: float
    pmf: float


def poisson_binom_at(k: float, p: FloatArray) -> CdfPmf:
    """``scipy.stats.poisson_binom.cdf(k, p)`` and ``.pmf(k, p)``, from one recurrence.

    scipy computes them in compiled code inside ``scipy.stats`` (``_stats_pythran``);
    this is the same recurrence (Biscarri et al. 2018, eq. 2) in the same order, whose
    products and sums round alike, and ``cumsum`` for the cdf. Then as
    ``rv_discrete``: nan for a ``p_i`` outside [0, 1] or a nan ``k``; cdf 0 below the
    support and 1 from its top ``len(p)``; pmf 0 off the support or at a non-integer
    ``k``; values clipped to [0, 1].
    """
    size = p.shape[0]
    if math.isnan(k) or not bool(np.all((p >= 0) & (p <= 1))):
        return CdfPmf(math.nan, math.nan)
    pmf = _poisson_binom_pmf(p)
    if k < 0:
        cdf = 0.0
    elif k >= size:
        cdf = 1.0
    else:
        cdf = float(np.clip(np.cumsum(pmf)[int(k)], 0.0, 1.0))
    at = float(np.clip(pmf[int(k)], 0.0, 1.0)) if 0 <= k <= size and k == math.floor(k) else 0.0
    return CdfPmf(cdf, at)


def _poisson_binom_pmf(p: FloatArray) -> FloatArray:
    """P(sum = j) for j = 0..len(p): scipy's ``_poisson_binom_pmf``, step for step."""
    size = p.shape[0]
    pmf = np.zeros(size + 1, dtype=np.float64)
    if size == 0:
        pmf[0] = 1.0
        return pmf
    pmf[0], pmf[1] = 1.0 - p[0], p[0]
    passed = np.empty(size, dtype=np.float64)
    for i in range(1, size):
        np.multiply(pmf[: i + 1], p[i], out=passed[: i + 1])
        pmf[: i + 1] *= 1.0 - p[i]
        pmf[1 : i + 2] += passed[: i + 1]
    return pmf
