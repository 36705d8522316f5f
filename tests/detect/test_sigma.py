from __future__ import annotations

import pytest

from routewatch.detect.sigma import (
    SigmaMode,
    binary_sd_floor,
    log_rule,
    multiplier,
    sigma_rule,
)


def test_sigma_rule_floors_zero_variance_baseline() -> None:
    """A deterministic route: every run 180/200. One flipped item must not page."""
    floor = binary_sd_floor([14] * 180 + [0] * 20, [14] * 200)
    baseline = [0.9] * 14

    one_flip = sigma_rule(baseline, 179 / 200, sigma=2.0, sd_floor=floor)
    six_flips = sigma_rule(baseline, 174 / 200, sigma=2.0, sd_floor=floor)

    assert not one_flip.fired
    assert six_flips.fired
    assert one_flip.lower_limit == pytest.approx(0.9 - 2 * floor)


def test_binary_floor_is_far_below_the_binomial_standard_error() -> None:
    floor = binary_sd_floor([14] * 180 + [0] * 20, [14] * 200)

    assert 1 / 200 <= floor < 0.7 * (0.9 * 0.1 / 200) ** 0.5


def test_classic_sigma_rule_fires_below_mean_minus_two_sd() -> None:
    baseline = [0.80, 0.82, 0.84, 0.86, 0.88]

    rule = sigma_rule(baseline, 0.79, sigma=2.0)

    assert rule.mean == pytest.approx(0.84)
    assert rule.sd == pytest.approx(0.0316, abs=1e-4)
    assert rule.fired == (0.84 - 2 * rule.sd > 0.79)


def test_prediction_mode_widens_two_sigma_to_its_promised_tail() -> None:
    assert multiplier(2.0, SigmaMode.prediction, 14) == pytest.approx(2.29, abs=0.01)
    assert multiplier(2.0, SigmaMode.classic, 14) == 2.0


def test_log_rule_flags_a_doubled_latency_and_not_a_wobble() -> None:
    baseline = [400, 420, 390, 410, 405, 395, 415]

    doubled = log_rule(baseline, 820)
    wobble = log_rule(baseline, 425)

    assert doubled is not None
    assert wobble is not None
    assert doubled.p_value < 1e-4
    assert doubled.ratio == pytest.approx(2.0, rel=0.02)
    assert wobble.p_value > 0.05


def test_log_rule_needs_two_positive_baseline_values() -> None:
    assert log_rule([0.0, 400], 500) is None
