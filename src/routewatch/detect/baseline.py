"""PURE: what a run is compared with: the route's own recent runs and each item's history.

The store hands over the runs before today's, newest first, as ``RunRecord`` values.
``select_baseline`` keeps the last ``baseline_runs`` of them that were not inside an
incident on the metric and not ``judge_suspect``, skipping the most recent
``guard_runs`` so a slow drop is not absorbed. Each item's history for the paired tests
comes from the same eligible runs, reaching back ``item_history_runs`` (28) of them: a
better estimate of each item's pass rate than 14 runs give. Items are paired by content
hash, so an item keeps its history across eval-set versions while new items start empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config imports sqlalchemy and apscheduler; detect stays pure
    from routewatch.config import Detection


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """One item in one run."""

    item_hash: str
    item_id: str
    weight: float = 1.0
    critical: bool = False
    score: float | None
    """Mean of the samples the route answered and something scored; None when none."""
    passed: bool | None
    samples_scored: int
    samples_passed: int
    samples_errored: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One completed run as detection sees it."""

    run_id: int
    at: datetime
    items: Mapping[str, ItemOutcome]
    """By item hash."""
    results_total: int
    errors_total: int
    p95_latency_ms: float | None = None
    cost_usd: float | None = None
    judge_suspect: bool = False
    incident_metrics: frozenset[str] = frozenset()
    """Metrics that had an open incident during this run: left out of their baselines."""
    cusum: float = 0.0
    """The quality CUSUM after this run."""

    @property
    def cost_per_call(self) -> float | None:
        """Cost per result: comparable across eval-set versions of different sizes."""
        if self.cost_usd is None or self.results_total == 0:
            return None
        return self.cost_usd / self.results_total


@dataclass(slots=True)
class ItemHistory:
    """One item's outcomes over the baseline runs."""

    passes: int = 0
    """Scored samples that passed."""
    trials: int = 0
    """Scored samples."""
    runs: int = 0
    """Baseline runs in which the item was scored."""
    scores: list[float] = field(default_factory=list)
    """The item's score in each of those runs."""


def select_baseline(
    history: Sequence[RunRecord], metric: str, settings: Detection, *, runs: int | None = None
) -> list[RunRecord]:
    """The baseline runs for ``metric``: newest first, guard band skipped.

    Args:
        history: Completed runs before today's, newest first.
        metric: Runs with an open incident on this metric are left out.
        settings: ``baseline_runs``, ``min_baseline_runs`` and ``guard_runs``.
        runs: How many runs to keep; ``baseline_runs`` unless given (``item_runs``).

    Returns:
        Up to ``runs`` runs; fewer than ``min_baseline_runs`` means "unknown".
        The guard band shrinks while history is short, so a new route leaves
        ``unknown`` after ``min_baseline_runs`` runs rather than after ``+ guard_runs``.
    """
    eligible = [r for r in history if not r.judge_suspect and metric not in r.incident_metrics]
    skip = min(settings.guard_runs, max(0, len(eligible) - settings.min_baseline_runs))
    return eligible[skip : skip + (settings.baseline_runs if runs is None else runs)]


def item_runs(settings: Detection) -> int:
    """Runs in each item's history: ``item_history_runs``, never fewer than the baseline's."""
    return max(settings.baseline_runs, settings.item_history_runs)


def history_depth(settings: Detection) -> int:
    """Completed runs detection looks back over when nothing is left out."""
    return item_runs(settings) + settings.guard_runs


def item_histories(
    runs: Sequence[RunRecord], *, start: Mapping[str, ItemHistory] | None = None
) -> dict[str, ItemHistory]:
    """Per item hash, its passes, trials and scores over ``runs``.

    Args:
        runs: Runs, newest first.
        start: Histories over newer runs, to go on from (left unchanged): the result is
            then that of those runs followed by ``runs``, without going over them again.
    """
    out: dict[str, ItemHistory] = {
        key: ItemHistory(passes=h.passes, trials=h.trials, runs=h.runs, scores=list(h.scores))
        for key, h in (start or {}).items()
    }
    for run in runs:
        for key, item in run.items.items():
            score = item.score
            if score is None or item.samples_scored == 0:
                continue
            h = out.get(key)
            if h is None:
                h = out[key] = ItemHistory()
            h.passes += item.samples_passed
            h.trials += item.samples_scored
            h.runs += 1
            h.scores.append(score)
    return out


def weighted_score(items: Sequence[ItemOutcome]) -> float | None:
    """The weight-averaged score of the scored ``items``; None when none is scored."""
    scored = [i for i in items if i.score is not None]
    total = sum([i.weight for i in scored])
    if total <= 0:
        return None
    return sum([i.weight * (i.score or 0.0) for i in scored]) / total
