"""Simulated routes for ``bench/detection.py`` and the detection property tests.

A route is a vector of per-item pass probabilities drawn from a profile
(STATISTICS.md 5.5): ``near_det`` (85.3 % of items at 0.995, the rest at 0.01),
``mixed`` (Beta(0.85, 0.15)) and ``random`` (every item 0.85). Each simulated run goes
through the real, pure detection pipeline: ``evaluate`` -> ``decide`` -> ``advance``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import optimize

from routewatch.config import Detection
from routewatch.detect.baseline import ItemOutcome, RunRecord, history_depth
from routewatch.detect.budget import cycle_alpha
from routewatch.detect.findings import Decision, Metric, decide, evaluate, route_alpha
from routewatch.incidents import OpenIncident, Transition, advance

PROFILES = ("near_det", "mixed", "random")
START = datetime(2026, 1, 1, 6, tzinfo=UTC)


def profile(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-item true pass probabilities of a fresh route."""
    if name == "near_det":
        return np.where(rng.random(n) < 0.853, 0.995, 0.01)
    if name == "mixed":
        return rng.beta(0.85, 0.15, n)
    if name == "random":
        return np.full(n, 0.85)
    raise ValueError(f"unknown profile {name!r}")


def break_items(p: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """Items break: ``k`` random items with p >= 0.5 fall to 0.1 p; mean drop ``drop``."""
    out = p.copy()
    candidates = np.flatnonzero(p >= 0.5)
    rng.shuffle(candidates)
    target = drop * p.size
    lost = 0.0
    for i in candidates:
        if lost >= target - 1e-12:
            break
        lost += 0.9 * out[i]
        out[i] *= 0.1
    return out


def diffuse(p: np.ndarray, drop: float) -> np.ndarray:
    """Every item a little worse: one logit shift with mean drop ``drop``."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    logit = np.log(q / (1 - q))

    def gap(shift: float) -> float:
        return float((p - 1 / (1 + np.exp(-(logit - shift)))).mean() - drop)

    if gap(30.0) < 0:
        return np.zeros_like(p)
    shifted: np.ndarray = 1 / (1 + np.exp(-(logit - optimize.brentq(gap, 0.0, 30.0))))
    return shifted


def record(
    run_id: int, passes: np.ndarray, samples: int, critical: frozenset[int] = frozenset()
) -> RunRecord:
    """A ``RunRecord`` of ``passes[i]`` passing samples out of ``samples`` per item."""
    items = {}
    for i, x in enumerate(passes.tolist()):
        score = x / samples
        items[f"h{i:05d}"] = ItemOutcome(
            item_hash=f"h{i:05d}",
            item_id=f"item-{i}",
            critical=i in critical,
            score=score,
            passed=score >= 0.5,
            samples_scored=samples,
            samples_passed=int(x),
        )
    return RunRecord(
        run_id=run_id,
        at=START + timedelta(days=run_id),
        items=items,
        results_total=passes.size * samples,
        errors_total=0,
    )


@dataclass
class SimRoute:
    """One route's history and open incidents, advanced one daily run at a time."""

    settings: Detection
    samples: int = 1
    history: list[RunRecord] = field(default_factory=list)
    open: dict[str, OpenIncident] = field(default_factory=dict)
    next_incident: int = 1
    opened: list[tuple[int, str]] = field(default_factory=list)
    """``(run id, metric)`` of every incident opened."""
    resolved: list[tuple[int, int]] = field(default_factory=list)
    """``(run id, incident id)`` of every incident resolved."""

    @property
    def keep(self) -> int:
        return history_depth(self.settings) + 60

    def step(
        self, passes: np.ndarray, critical: frozenset[int] = frozenset()
    ) -> tuple[Decision, Transition]:
        """Score one run through evaluate -> decide -> advance, and remember it."""
        run_id = len(self.history) + 1 if not self.history else self.history[0].run_id + 1
        today = record(run_id, passes, self.samples, critical)
        alpha = cycle_alpha(self.settings.false_alarms_per_year, 1.0)
        evaluation = evaluate(
            today, self.history, self.settings, alpha_route=route_alpha(self.settings, alpha, 1)
        )
        decision = decide([evaluation], self.settings, alpha_cycle=alpha, tests=1)[0]
        transition = advance(
            list(self.open.values()),
            decision.findings,
            decision.bad_metrics,
            recover_runs=self.settings.recover_runs,
            known=evaluation.known,
        )
        for finding in transition.opened:
            self.open[finding.metric] = OpenIncident(id=self.next_incident, metric=finding.metric)
            self.opened.append((run_id, finding.metric))
            self.next_incident += 1
        by_id = {i.id: m for m, i in self.open.items()}
        for incident_id in transition.attached:
            self.open[by_id[incident_id]] = replace(self.open[by_id[incident_id]], healthy_streak=0)
        for incident_id, streak in transition.recovering:
            self.open[by_id[incident_id]] = replace(
                self.open[by_id[incident_id]], healthy_streak=streak
            )
        for incident_id in transition.resolved:
            del self.open[by_id[incident_id]]
            self.resolved.append((run_id, incident_id))
        cusum = 0.0 if Metric.score in transition.open_after else evaluation.cusum
        self.history.insert(0, replace(today, incident_metrics=transition.in_incident, cusum=cusum))
        del self.history[self.keep :]
        return decision, transition


def run_days(
    route: SimRoute,
    p: np.ndarray,
    days: int,
    rng: np.random.Generator,
    *,
    change: Callable[[int], np.ndarray] | None = None,
    stop_on_open: bool = False,
) -> int | None:
    """Run ``days`` daily runs; ``change(day)`` gives that day's p. Returns the first day
    an incident opened (0-based), or None."""
    first = None
    for day in range(days):
        today_p = change(day) if change is not None else p
        passes = rng.binomial(route.samples, today_p)
        before = len(route.opened)
        route.step(passes)
        if len(route.opened) > before and first is None:
            first = day
            if stop_on_open:
                break
    return first
