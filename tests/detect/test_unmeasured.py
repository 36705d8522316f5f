"""Which open incidents a run can speak for: ``incidents.unmeasured`` and ``advance``."""

from __future__ import annotations

from datetime import UTC, datetime

from routewatch.detect.baseline import ItemOutcome, RunRecord
from routewatch.incidents import OpenIncident, advance, unmeasured

METRICS = [
    "score",
    "error_rate",
    "p95_latency_ms",
    "cost_per_call_usd",
    "critical:a",
    "critical:gone",
]


def item(item_id: str, *, scored: int, errored: int = 0) -> ItemOutcome:
    return ItemOutcome(
        item_hash=f"h-{item_id}",
        item_id=item_id,
        critical=True,
        score=1.0 if scored else None,
        passed=True if scored else None,
        samples_scored=scored,
        samples_passed=scored,
        samples_errored=errored,
    )


def record(items: list[ItemOutcome], *, errors: int, latency: float | None) -> RunRecord:
    return RunRecord(
        run_id=1,
        at=datetime(2026, 11, 9, 6, tzinfo=UTC),
        items={i.item_hash: i for i in items},
        results_total=len(items),
        errors_total=errors,
        p95_latency_ms=latency,
        cost_usd=0.0 if errors == len(items) else 0.01,
    )


def test_a_run_whose_every_call_failed_measured_all_but_the_error_rate() -> None:
    failed = record(
        [item("a", scored=0, errored=1), item("b", scored=0, errored=1)], errors=2, latency=None
    )

    assert unmeasured(failed, METRICS) == {
        "score",
        "p95_latency_ms",
        "cost_per_call_usd",
        "critical:a",
        "critical:gone",
    }


def test_a_run_that_answered_other_items_holds_nothing() -> None:
    """An item that always errors (too long for the model) would hold its incident open,
    and its route demoted, for good."""
    partial = record([item("a", scored=0, errored=1), item("b", scored=1)], errors=1, latency=120.0)

    assert unmeasured(partial, METRICS) == frozenset()


def test_a_held_incident_neither_recovers_nor_attaches() -> None:
    open_ = [
        OpenIncident(id=1, metric="score", healthy_streak=2),
        OpenIncident(id=2, metric="error_rate"),
    ]

    held = advance(open_, [], ["error_rate"], recover_runs=3, held={"score"})
    counted = advance(open_, [], ["error_rate"], recover_runs=3)

    assert (held.resolved, held.recovering, held.attached) == ((), (), (2,))
    assert (counted.resolved, counted.attached) == ((1,), (2,))
