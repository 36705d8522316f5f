"""The paired quality tests share their budget with weighted Simes."""

from __future__ import annotations

import math

import pytest

from routewatch.detect.budget import Detector
from routewatch.detect.findings import Candidate, Metric, combine_paired

ALPHA = 0.01


def paired(detector: Detector, p: float, share: float, *, effect_ok: bool = True) -> Candidate:
    return Candidate(
        metric=Metric.score,
        detector=detector,
        observed=0.8,
        p_value=p,
        share=share,
        threshold=share * ALPHA,
        effect_ok=effect_ok,
    )


def test_one_small_p_value_pages_as_under_a_bonferroni_split() -> None:
    out = combine_paired(
        [paired(Detector.cet, 0.9 * 0.35 * ALPHA, 0.35), paired(Detector.cetw, 0.5, 0.2)],
        ALPHA,
    )

    assert out[0].adjusted == pytest.approx(0.9 * ALPHA)
    assert out[1].adjusted == pytest.approx(0.5 / 0.2 / 2)
    p, threshold = out[0].p_value, out[0].threshold
    assert p is not None
    assert threshold is not None
    assert p <= threshold


def test_two_moderate_p_values_page_together_where_bonferroni_would_not() -> None:
    """Each is 1.5 and 1.8 times its own share: Bonferroni misses, Simes (1.8 / 2) pages."""
    cet = paired(Detector.cet, 1.5 * 0.35 * ALPHA, 0.35)
    cetw = paired(Detector.cetw, 1.8 * 0.2 * ALPHA, 0.2)
    assert min(cet.adjusted, cetw.adjusted) > ALPHA

    out = combine_paired([cet, cetw], ALPHA)

    assert [c.adjusted for c in out] == pytest.approx([0.9 * ALPHA, 0.9 * ALPHA])
    for c in out:
        assert c.p_value is not None
        assert c.threshold is not None
        assert c.p_value <= c.threshold


def test_other_detectors_and_tests_without_the_effect_stay_out() -> None:
    errors = Candidate(
        metric=Metric.error_rate, detector=Detector.errors, observed=0.1, p_value=0.001, share=0.15
    )
    trivial = paired(Detector.cetw, 1e-9, 0.2, effect_ok=False)
    cet = paired(Detector.cet, 0.35 * ALPHA, 0.35)

    out = combine_paired([errors, trivial, cet], ALPHA)

    assert out[0] == errors
    assert math.isinf(out[1].adjusted)
    assert out[2].adjusted == pytest.approx(ALPHA)  # alone in its family: rank 1
