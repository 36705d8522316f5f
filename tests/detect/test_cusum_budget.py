from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from routewatch.detect import cusum
from routewatch.detect.budget import SHARES, bh_cutoff, cycle_alpha, shares


def test_cusum_grows_on_bad_runs_and_drains_on_good_ones() -> None:
    c = 0.0
    for _ in range(3):
        c = cusum.step(c, 0.01)

    assert c == pytest.approx(3 * (2.326 - 0.5), abs=0.01)
    assert cusum.step(c, 0.9) < c
    assert cusum.step(0.0, 0.6) == 0.0


def test_the_z_score_is_the_normal_quantile_of_the_clipped_mid_p() -> None:
    mid_p = [0.0, 1e-13, 1e-12, 0.01, 0.5, 0.9, 1.0 - 1e-12, 1.0, *np.linspace(0, 1, 1001)]

    got = [cusum.z_score(p) for p in mid_p]

    clipped = np.clip(mid_p, cusum.P_CLIP, 1.0 - cusum.P_CLIP)
    assert got == [float(stats.norm.ppf(p)) for p in clipped]


@pytest.mark.parametrize(("arl0", "h"), cusum.H_BY_ARL0)
def test_cusum_threshold_hits_its_calibration_points(arl0: float, h: float) -> None:
    assert cusum.threshold(arl0) == pytest.approx(h)


def test_cusum_threshold_rises_with_the_wanted_run_length() -> None:
    hs = [cusum.threshold(a) for a in (100, 365, 1000, 1460, 5000, 100_000)]

    assert hs == sorted(hs)


def test_shares_never_spend_more_than_the_whole_budget() -> None:
    assert sum(SHARES.values()) == pytest.approx(1.0)
    assert sum(shares(True).values()) == pytest.approx(1.0)


def test_cycle_alpha_of_one_alarm_a_year_on_daily_runs() -> None:
    assert cycle_alpha(1.0, 1.0) == pytest.approx(1 / 365)
    assert cycle_alpha(1.0, 7.0) == pytest.approx(7 / 365)


def test_bh_rejects_the_step_up_set() -> None:
    """Benjamini-Hochberg at q = 0.05 over 5 tests: 0.01 <= 0.01 and 0.02 <= 0.02 pass."""
    assert bh_cutoff([0.01, 0.02, 0.5, 0.04, 0.9], 0.05, 5) == 0.02
    assert bh_cutoff([0.2, 0.5], 0.05, 2) is None


def test_bh_counts_routes_that_did_not_run_as_nulls() -> None:
    assert bh_cutoff([0.015], 0.05, 1) == 0.015
    assert bh_cutoff([0.015], 0.05, 5) is None
