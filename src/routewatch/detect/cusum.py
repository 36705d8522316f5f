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

from scipy import special

P_CLIP = 1e-12

H_BY_ARL0: tuple[tuple[float, float], ...] = (
    (365.0, 4.6),
    (730.0, 5.5),
    (1460.0, 6.4),
    (2920.0, 7.3),
    (7300.0, 8.45),
    (36500.0, 10.9),
)
"""``(ARL0 in runs, h)`` with ``k = 0.5``, 28 runs of item history (``item_history_runs``)
and a 7-run guard band: the largest ``h`` over the near-deterministic, mixed and random
profiles (200 items, 547,500 simulated stable runs each) from
``bench/calibrate_cusum.py``. The i.i.d. tables say 4.76 at ARL0 730; overlapping
baselines need about 5.5. Mixed routes set every row but the first (random, 4.6);
near-deterministic ones come out 0.4 to 1.7 lower. Between rows ``h`` is interpolated
on ``log(ARL0)``; the last row rests on 15 alarms (about +-1).

The table before was calibrated with 14 runs of item history, whose inputs overlap
more, and was 0.3 to 0.5 higher; it spent less than the CUSUM's share of the budget."""


def z_score(p_mid: float) -> float:
    """The standard normal quantile of a mid-p value, clipped away from 0 and 1."""
    # ``stats.norm.ppf`` is ``special.ndtri`` behind argument checks that cost ten times
    # the quantile itself; the clipped value never needs them.
    return float(special.ndtri(min(max(p_mid, P_CLIP), 1.0 - P_CLIP)))


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
