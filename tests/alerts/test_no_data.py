"""NO_DATA: a scheduled run that did not complete in time alerts once, and so does its return."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import yaml
from sqlalchemy import Engine

import store_rows
from routewatch.config import Config, load_config
from routewatch.cron import last_fire_at_or_before, parse_cron
from routewatch.store.migrate import open_database
from routewatch.store.nodata import check_no_data
from routewatch.store.tables import RunStatus
from runner_project import rows

GRACE = timedelta(hours=6)


def test_last_fire_is_the_newest_slot_not_after_the_moment() -> None:
    daily = parse_cron("0 6 * * *", "Europe/Berlin")
    moment = datetime(2026, 11, 10, 4, 59, tzinfo=UTC)  # 05:59 in Berlin

    assert last_fire_at_or_before(daily, moment) == datetime(2026, 11, 9, 5, 0, tzinfo=UTC)
    assert last_fire_at_or_before(daily, moment + timedelta(minutes=1)) == moment.replace(
        minute=0
    ).replace(hour=5)
    weekly = parse_cron("0 8 * * mon")
    assert last_fire_at_or_before(weekly, datetime(2026, 11, 29, tzinfo=UTC)) == datetime(
        2026, 11, 23, 8, 0, tzinfo=UTC
    )


def write(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "routewatch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": db_url,
                "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
                "routes": {
                    "nightly": {
                        "provider": "p",
                        "model": "m",
                        "evals": ["faq"],
                        "schedule": "0 6 * * *",
                    },
                    "by-hand": {"provider": "p", "model": "m", "evals": ["faq"]},
                },
                "alerts": {"webhooks": [{"url": "http://127.0.0.1:9/hook"}]},
            }
        )
    )
    return path


def add_run(
    engine: Engine, at: datetime, status: RunStatus = RunStatus.completed, *, errors: int = 0
) -> None:
    """A run of the scheduled route, six calls of which ``errors`` failed."""
    store_rows.add_run(engine, "nightly", at, status=status, errors_total=errors)


def states(engine: Engine, config: Config, at: datetime) -> list[tuple[str, bool]]:
    """Each scheduled route's NO_DATA state at ``at``, and whether it just changed."""
    found = check_no_data(engine, config, now=at, grace=GRACE, targets=config.alerts.targets())
    return [(s.state.value, s.changed) for s in found]


def test_a_missed_slot_alerts_once_and_the_next_run_clears_it(tmp_path: Path, db_url: str) -> None:
    config = load_config(write(tmp_path, db_url), {})
    engine = open_database(config.database_url)
    check = partial(states, engine, config)
    day = datetime(2026, 11, 10, tzinfo=UTC)
    add_run(engine, day.replace(hour=6))

    assert check(day + timedelta(hours=13)) == [("ok", False)]
    assert check(day + timedelta(days=1, hours=11)) == [("ok", False)], "within the grace"
    assert check(day + timedelta(days=1, hours=13)) == [("no_data", True)]
    assert check(day + timedelta(days=1, hours=20)) == [("no_data", False)], "told once"
    add_run(engine, day + timedelta(days=1, hours=6))
    assert check(day + timedelta(days=1, hours=21)) == [("ok", True)]

    events = [(o["event"], o["payload"]["route"]) for o in rows(db_url, "outbox")]
    assert events == [("route.no_data", "nightly"), ("route.data_resumed", "nightly")]
    engine.dispose()


def test_a_new_route_whose_every_run_fails_is_late_too(tmp_path: Path, db_url: str) -> None:
    """A fresh deployment with a missing API key: the daemon's runs fail, none completes."""
    config = load_config(write(tmp_path, db_url), {})
    engine = open_database(config.database_url)
    check = partial(states, engine, config)
    day = datetime(2026, 11, 10, tzinfo=UTC)

    assert check(day + timedelta(days=1, hours=13)) == [], "never tried: nothing is late"
    add_run(engine, day.replace(hour=6), status=RunStatus.failed)
    assert check(day + timedelta(hours=11)) == [], "within the grace of its first slot"
    assert check(day + timedelta(hours=13)) == [("no_data", True)]
    add_run(engine, day + timedelta(days=1, hours=6))
    assert check(day + timedelta(days=1, hours=13)) == [("ok", True)]

    events = [o["payload"] for o in rows(db_url, "outbox")]
    assert [(e["event"], e["missing_eval_sets"]) for e in events] == [
        ("route.no_data", ["faq"]),
        ("route.data_resumed", []),
    ]
    engine.dispose()


def test_runs_whose_every_call_failed_bring_no_data(tmp_path: Path, db_url: str) -> None:
    """A provider down or a wrong base_url: the runs complete, with nothing measured."""
    config = load_config(write(tmp_path, db_url), {})
    engine = open_database(config.database_url)
    check = partial(states, engine, config)
    day = datetime(2026, 11, 10, tzinfo=UTC)
    add_run(engine, day.replace(hour=6))

    assert check(day + timedelta(hours=13)) == [("ok", False)]
    add_run(engine, day + timedelta(days=1, hours=6), errors=6)
    assert check(day + timedelta(days=1, hours=13)) == [("no_data", True)]
    add_run(engine, day + timedelta(days=2, hours=6), errors=5)
    assert check(day + timedelta(days=2, hours=13)) == [("ok", True)], "one answer is data"
    engine.dispose()
