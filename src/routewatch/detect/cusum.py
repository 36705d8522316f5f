"""PURE: a one-sided CUSUM that catches slow drift the per-run tests miss.

Its input each run is ``z = Phi^-1(mid-p)`` of the paired count test, so a stable route
feeds it roughly standard normal values whatever the route's profile. The threshold
``h`` for a wanted mean run length between false alarms (ARL0) comes from
``bench/detection.py``, not from i.i.d. tables: baselines overlap from one run to the
next, so the inputs are correlated and the textbook ``h`` pages too often.
"""

from __future__ import annotations

import bisect
import math

from scipy import stats

P_CLIP = 1e-12

H_BY_ARL0: tuple[tuple[float, float], ...] = (
    (365.0, 4.9),
    (730.0, 5.9),
    (1460.0, 6.8),
    (2920.0, 7.75),
    (7300.0, 8.75),
    (36500.0, 10.5),
)
"""``(ARL0 in runs, h)`` with ``k = 0.5``, a 14-run baseline and a 7-run guard band: the
largest ``h`` over the near-deterministic, mixed and random profiles (200 items,
146,000 simulated stable runs each) from ``bench/calibrate_cusum.py``. The i.i.d.
tables say 4.76 at ARL0 730; overlapping baselines need about 5.9. Between rows ``h``
is interpolated on ``log(ARL0)``; the last row rests on few alarms (about +-1).

Items now keep 28 runs of history (``item_history_runs``), whose inputs overlap less:
recalibrated (547,500 runs per profile) the same rows come out 0.1-0.5 lower on random
routes and up to 1 lower on near-deterministic ones. The table is kept as is: it errs on
the side of fewer false pages, and with the lower values ``bench/detection.py``'s
persistent drops (100 routes each) were caught no sooner."""


def z_score(p_mid: float) -> float:
    """The standard normal quantile of a mid-p value, clipped away from 0 and 1."""
    return float(stats.norm.ppf(min(max(p_mid, P_CLIP), 1.0 - P_CLIP)))


def step(previous: float, p_mid: float, k: float = 0.5) -> float:
    """``C_t = max(0, C_{t-1} - z_t - k)``: grows while runs look worse than usual."""
    return max(0.0, previous - z_score(p_mid) - k)


def threshold(arl0: float) -> float:
    """The ``h`` whose false-alarm run length is ``arl0`` runs (k = 0.5)."""
    if arl0 <= 1:
        raise ValueError(f"ARL0 must be more than one run, got {arl0}")
    arls = [math.log(a) for a, _ in H_BY_ARL0]
    hs = [h for _, h in H_BY_ARL0]
    x = math.log(arl0)
    i = bisect.bisect_left(arls, x)
    if i == 0:
        lo, hi = 0, 1
    elif i == len(arls):
        lo, hi = len(arls) - 2, len(arls) - 1
    else:
        lo, hi = i - 1, i
    slope = (hs[hi] - hs[lo]) / (arls[hi] - arls[lo])
    return max(0.5, hs[lo] + slope * (x - arls[lo]))
