"""The reads behind `status`, on routes with more than one eval set."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert

from routewatch.store.queries import completed_run_counts, latest_runs
from routewatch.store.tables import EvalSetRow, RouteSnapshotRow, RunRow

AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def add_runs(engine: Engine, runs: list[tuple[str, int, str]]) -> None:
    """Insert (eval set name, day offset, status) runs of route "r"."""
    with engine.begin() as conn:
        set_id = conn.execute(
            insert(EvalSetRow).returning(EvalSetRow.id),
            {
                "name": "s",
                "version": "v",
                "scale_min": 1,
                "scale_max": 5,
                "pass_threshold": 0.7,
                "definition": {},
            },
        ).scalar_one()
        snap = conn.execute(
            insert(RouteSnapshotRow).returning(RouteSnapshotRow.id),
            {"route": "r", "provider": "p", "model": "m", "params": {}, "config_hash": "h"},
        ).scalar_one()
        for eval_set, day, status in runs:
            conn.execute(
                insert(RunRow),
                {
                    "route": "r",
                    "route_snapshot_id": snap,
                    "eval_set_id": set_id,
                    "eval_set_name": eval_set,
                    "slot_key": f"{day}",
                    "status": status,
                    "at": AT + timedelta(days=day),
                    "started_at": AT,
                    "score": day / 10,
                },
            )


def test_latest_run_is_the_newest_of_any_eval_set(engine: Engine) -> None:
    add_runs(engine, [("a", 1, "completed"), ("b", 1, "completed"), ("a", 0, "completed")])

    last = latest_runs(engine, ["r"])["r"]

    assert (last.eval_set, last.at) == ("b", AT + timedelta(days=1))


def test_unfinished_runs_are_not_the_last_run(engine: Engine) -> None:
    add_runs(engine, [("a", 1, "completed"), ("a", 2, "running")])

    assert latest_runs(engine, ["r"])["r"].at == AT + timedelta(days=1)


def test_completed_runs_are_counted_per_eval_set(engine: Engine) -> None:
    add_runs(engine, [("a", 1, "completed"), ("a", 2, "completed"), ("b", 1, "failed")])

    assert completed_run_counts(engine, ["r"]) == {("r", "a"): 2}
