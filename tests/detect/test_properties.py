"""Issue 5's done-when properties, on simulated routes through the real pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from routesim import SimRoute, break_items, profile, run_days
from scipy import stats

from routewatch.config import Detection

SEEDS = 40
ITEMS = 50


def share_with_an_incident(settings: Detection, seeds: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hit = 0
    for _ in range(seeds):
        route = SimRoute(settings=settings)
        run_days(route, profile("mixed", ITEMS, rng), 365, rng, stop_on_open=True)
        hit += bool(route.opened)
    return hit / seeds


def test_a_stable_year_opens_an_incident_in_no_more_than_the_budgeted_share_of_seeds() -> None:
    """One false alarm a year means P(at least one in 365 days) <= 1 - e^-1 = 0.63."""
    settings = Detection()
    budget = 1 - math.exp(-settings.false_alarms_per_year)

    observed = share_with_an_incident(settings, SEEDS, seed=1)

    assert (
        stats.binomtest(round(observed * SEEDS), SEEDS, budget, alternative="greater").pvalue > 0.01
    )


def test_the_plain_sigma_rule_blows_that_budget() -> None:
    """The same check catches a detector that pages too often: ``method: sigma``."""
    settings = Detection(method="sigma")

    observed = share_with_an_incident(settings, 10, seed=2)

    assert observed > 1 - math.exp(-1)


@pytest.mark.parametrize("seed", range(4))
def test_an_injected_drop_opens_one_incident_that_resolves_after_recovery(seed: int) -> None:
    rng = np.random.default_rng(seed)
    settings = Detection()
    route = SimRoute(settings=settings)
    p = profile("near_det", 100, rng)
    broken = break_items(p, 0.10, rng)
    schedule = [p] * 25 + [broken] * 5 + [p] * 15

    run_days(route, p, len(schedule), rng, change=lambda day: schedule[day])

    assert [m for _, m in route.opened] == ["score"]
    opened_on = route.opened[0][0]
    assert 26 <= opened_on <= 27  # the first or second bad run (run ids start at 1)
    assert len(route.resolved) == 1
    resolved_on = route.resolved[0][0]
    assert 30 + settings.recover_runs <= resolved_on <= 30 + settings.recover_runs + 3
    assert route.open == {}
