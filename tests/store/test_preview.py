"""``run --dry-run``'s reading of the store: what a run would do with a slot, read only."""

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from test_runs import NOW, ROUTE, claim, record

from routewatch.evalset import EvalSet, load_eval_set
from routewatch.scaffold import EVAL_TEMPLATE, template_text
from routewatch.store.preview import preview_slot
from routewatch.store.runs import (
    ClaimOutcome,
    cancel_interrupted_run,
    ensure_eval_set,
    new_owner,
    release_owner,
    write_results,
)
from routewatch.store.tables import ResultRow, RunRow


@pytest.fixture
def evalset(tmp_path: Path) -> EvalSet:
    path = tmp_path / EVAL_TEMPLATE
    path.write_text(template_text(EVAL_TEMPLATE))
    return load_eval_set(path)


def test_a_resumed_run_counts_only_the_calls_the_set_and_samples_still_ask_for(
    engine: Engine, evalset: EvalSet
) -> None:
    """Three samples stored of a run since cut to one: what is left is counted as the
    runner counts it, never below zero."""
    stored = ensure_eval_set(engine, evalset)
    owner = new_owner()
    run = claim(engine, stored, owner)
    first, second = evalset.items[0].id, evalset.items[1].id
    records = [record(first, n, stored.item_ids[first]) for n in range(3)]
    records.append(record(second, 2, stored.item_ids[second]))
    write_results(engine, run_id=run.run_id, owner=owner, now=NOW, records=records)
    release_owner(owner)  # the process is gone: its run is interrupted

    preview = preview_slot(
        engine,
        route_name="chat",
        route=ROUTE,
        evalset=evalset,
        slot_key=NOW.isoformat(),
        resume_unfinished=True,
        now=NOW,
    )
    thrice = preview_slot(
        engine,
        route_name="chat",
        route=ROUTE.model_copy(update={"samples": 3}),
        evalset=evalset,
        slot_key=NOW.isoformat(),
        resume_unfinished=False,
        now=NOW,
    )

    assert (preview.outcome, preview.run_id, preview.stored) == (
        ClaimOutcome.resumed,
        run.run_id,
        1,
    ), "item 1 sample 0 only: samples 1-2 and item 2's sample 2 are no longer asked for"
    assert (thrice.outcome, thrice.stored) == (ClaimOutcome.resumed, 4)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ResultRow)).scalar_one() == 4


def test_an_interrupted_run_of_another_route_config_is_named_as_cancelled(
    engine: Engine, evalset: EvalSet
) -> None:
    """Without --at the runner cancels it and starts anew; the dry run says both."""
    stored = ensure_eval_set(engine, evalset)
    owner = new_owner()
    run = claim(engine, stored, owner)
    release_owner(owner)
    changed = ROUTE.model_copy(update={"model": "another-model"})

    preview = preview_slot(
        engine,
        route_name="chat",
        route=changed,
        evalset=evalset,
        slot_key="2026-11-24T06:00:00+00:00",
        resume_unfinished=True,
        now=NOW,
    )

    assert (preview.outcome, preview.cancels) == (ClaimOutcome.started, (run.run_id,))


def test_an_interrupted_run_is_cancelled_once_and_a_live_one_never(
    engine: Engine, evalset: EvalSet
) -> None:
    stored = ensure_eval_set(engine, evalset)
    owner = new_owner()
    run = claim(engine, stored, owner)

    assert not cancel_interrupted_run(engine, run.run_id, now=NOW, reason="x"), "alive"
    release_owner(owner)
    assert cancel_interrupted_run(engine, run.run_id, now=NOW, reason="changed since")
    assert not cancel_interrupted_run(engine, run.run_id, now=NOW, reason="again")

    with engine.connect() as conn:
        status, message = conn.execute(
            select(RunRow.status, RunRow.error_message).where(RunRow.id == run.run_id)
        ).one()
    assert (status, message) == ("cancelled", "changed since")
