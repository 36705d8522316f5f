"""Calibrate the CUSUM threshold ``h`` by simulation (the table in ``detect/cusum.py``).

Stable routes of each profile run for years; each day's input is the mid-p of the
paired count test against each item's history (``item_history_runs``, 28) behind the
7-run guard band, with the configured ``cusum_k``, exactly as in ``routewatch.detect``.
For each wanted ARL0 (mean runs between false alarms) this prints the ``h`` whose
simulated false-alarm rate matches it.

    python bench/calibrate_cusum.py [--routes 60] [--days 3650]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from routesim import profile

from routewatch.config import Detection
from routewatch.detect.baseline import item_runs
from routewatch.detect.cusum import H_BY_ARL0, P_CLIP

SETTINGS = Detection()
B, G, K = item_runs(SETTINGS), SETTINGS.guard_runs, SETTINGS.cusum_k
HS = np.round(np.arange(3.0, 12.01, 0.05), 2)


def mid_p_series(p: np.ndarray, days: int, rng: np.random.Generator) -> np.ndarray:
    """Per day, the CET mid-p of that day's run against its guarded baseline."""
    x = (rng.random((days + B + G, p.size)) < p).astype(np.float64)
    csum = np.vstack([np.zeros(p.size), np.cumsum(x, axis=0)])
    t = np.arange(B + G, days + B + G)
    c = csum[t - G] - csum[t - G - B]
    today = x[t]
    pi = (c + today) / (B + 1.0)
    obs = today.sum(axis=1)
    cdf = stats.poisson_binom.cdf(obs[:, None], pi[:, None, :])[:, 0]
    pmf = stats.poisson_binom.pmf(obs[:, None], pi[:, None, :])[:, 0]
    return np.clip(cdf - 0.5 * pmf, P_CLIP, 1 - P_CLIP)


def alarms(z: np.ndarray, k: float = K) -> np.ndarray:
    """False alarms for every h in ``HS`` on one route's z series (reset after each)."""
    c = np.zeros(HS.size)
    out = np.zeros(HS.size)
    for v in z:
        c = np.maximum(0.0, c - v - k)
        fired = c > HS
        out += fired
        c[fired] = 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", type=int, default=60)
    parser.add_argument("--days", type=int, default=3650)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--k", type=float, default=K, help="CUSUM allowance (cusum_k)")
    args = parser.parse_args()
    rng = np.random.default_rng(20261123)
    for name in ("near_det", "mixed", "random"):
        total = np.zeros(HS.size)
        for _ in range(args.routes):
            z = stats.norm.ppf(mid_p_series(profile(name, args.n, rng), args.days, rng))
            total += alarms(z, args.k)
        runs = args.routes * args.days
        print(f"{name} (n={args.n}, k={args.k}, B={B}, G={G}, {runs} runs)")
        for arl0, current in H_BY_ARL0:
            rate = total / runs
            ok = np.flatnonzero(rate <= 1 / arl0)
            h = HS[ok[0]] if ok.size else float("nan")
            at_h = total[ok[0]] if ok.size else "n/a"
            print(f"  ARL0 {arl0:>7.0f}: h = {h:.2f} (table: {current}); alarms at h: {at_h}")


if __name__ == "__main__":
    main()
