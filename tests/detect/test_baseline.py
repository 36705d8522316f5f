from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from routesim import record

from routewatch.config import Detection
from routewatch.detect.baseline import (
    ItemOutcome,
    RunRecord,
    item_histories,
    item_runs,
    select_baseline,
)


def runs_with_changing_items(rng: np.random.Generator) -> list[RunRecord]:
    """20 runs, newest first: items come and go, some unscored or with no score."""

    def blur(item: ItemOutcome) -> ItemOutcome:
        u = rng.random()
        if u < 0.05:
            return replace(item, score=None)
        if u < 0.1:
            return replace(item, samples_scored=0, samples_passed=0)
        return item

    runs = []
    for run_id in range(20, 0, -1):
        run = record(run_id, rng.binomial(3, rng.random(30)), 3)
        items = {k: blur(v) for k, v in run.items.items() if rng.random() < 0.8}
        runs.append(replace(run, items=items))
    return runs


def test_item_histories_go_on_from_a_start_as_if_over_every_run() -> None:
    runs = runs_with_changing_items(np.random.default_rng(3))
    newer = item_histories(runs[:8])
    before = {k: (h.passes, h.trials, h.runs, list(h.scores)) for k, h in newer.items()}

    both = item_histories(runs[8:], start=newer)

    assert both == item_histories(runs)
    assert {k: (h.passes, h.trials, h.runs, h.scores) for k, h in newer.items()} == before


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), max_size=70),
    st.integers(2, 30),
    st.integers(2, 40),
    st.integers(0, 10),
)
def test_the_baseline_runs_are_the_newest_of_the_item_runs(
    flags: list[tuple[bool, bool]], baseline_runs: int, item_history_runs: int, guard_runs: int
) -> None:
    """``evaluate`` counts on it to build both item histories in one pass."""
    settings_ = Detection(
        baseline_runs=baseline_runs,
        min_baseline_runs=2,
        min_item_history=2,
        item_history_runs=item_history_runs,
        guard_runs=guard_runs,
    )
    empty = np.zeros(0, dtype=int)
    past = [
        replace(
            record(len(flags) - i, empty, 1),
            judge_suspect=suspect,
            incident_metrics=frozenset({"score"} if in_incident else ()),
        )
        for i, (suspect, in_incident) in enumerate(flags)
    ]

    base = select_baseline(past, "score", settings_)
    longer = select_baseline(past, "score", settings_, runs=item_runs(settings_))

    assert longer[: len(base)] == base
