"""`routewatch status` after real runs against the simulator."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from routewatch.cli import run
from routewatch.config import load_config
from routewatch.cron import last_fire_at_or_before, parse_cron
from routewatch.store.migrate import open_database
from routewatch.store.nodata import check_no_data
from runner_project import faq_simulator, write_project

LAST_RUN_KEYS = {
    "id",
    "at",
    "score",
    "pass_rate",
    "error_rate",
    "p50_latency_ms",
    "p95_latency_ms",
    "cost_usd",
    "tokens_in",
    "tokens_out",
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def status_json(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert run(["status", "-c", str(config), "--json"]) == 0
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return body


def test_status_has_the_design_shape_and_names_each_state(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = {
        "good": {"model": "perfect"},
        "broken": {"model": "failing"},
        "idle": {"model": "perfect"},
    }
    config = write_project(tmp_path, sim, routes)
    for day in range(1, 7):
        run(
            [
                "run",
                "-c",
                str(config),
                "--route",
                "good",
                "--route",
                "broken",
                "--at",
                f"2026-11-0{day}T06:00:00Z",
            ]
        )

    body = status_json(config, capsys)

    by_route = {r["route"]: r for r in body["routes"]}
    assert set(by_route["good"]) == {
        "route",
        "state",
        "last_run",
        "baseline",
        "open_incident",
        "no_data_since",
    }
    assert by_route["good"]["no_data_since"] is None
    assert set(by_route["good"]["last_run"]) >= LAST_RUN_KEYS
    assert by_route["good"]["last_run"]["at"] == "2026-11-06T06:00:00Z"
    assert (by_route["good"]["state"], by_route["broken"]["state"], by_route["idle"]["state"]) == (
        "healthy",
        "erroring",
        "unknown",
    )
    assert by_route["idle"]["last_run"] is None
    assert body["policies"] == []


def test_a_route_with_too_few_runs_is_unknown(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, {"good": {"model": "perfect"}})
    run(["run", "-c", str(config), "--at", "2026-11-01T06:00:00Z"])

    body = status_json(config, capsys)

    assert body["routes"][0]["state"] == "unknown"
    assert body["routes"][0]["last_run"]["score"] == 1.0
    run(["run", "-c", str(config), "--at", "2026-11-02T06:00:00Z"])
    capsys.readouterr()
    assert run(["status", "-c", str(config)]) == 0
    note = "unknown (learning: {} run(s) so far; a run is compared once 5 came before it)"
    assert note.format(2) in capsys.readouterr().out
    # History backfilled before them: enough runs, though none was compared yet.
    for day in range(3, 9):
        run(["run", "-c", str(config), "--at", f"2026-10-0{day}T06:00:00Z"])
    capsys.readouterr()
    assert run(["status", "-c", str(config)]) == 0
    assert note.format(8) in capsys.readouterr().out


def test_status_table_lists_every_route(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, {"a": {"model": "perfect"}, "b": {"model": "perfect"}})

    assert run(["status", "-c", str(config)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:4] for ln in lines[1:3]] == [
        ["a", "unknown", "never", "-"],
        ["b", "unknown", "never", "-"],
    ]
    assert run(["run", "-c", str(config), "--route", "a"]) == 0
    capsys.readouterr()
    assert run(["status", "-c", str(config)]) == 0
    header, a_row = capsys.readouterr().out.splitlines()[:2]
    column = header.index("of eval set")
    assert a_row[column:].split()[0] == "support-faq", "the eval set the figures are of"


def test_a_route_whose_scheduled_runs_stopped_is_not_called_healthy(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six healthy days, then nothing: ``status`` must not go on saying healthy.

    ``status`` reads the wall clock, so the days are the last ones before now.
    """
    config_path = write_project(
        tmp_path, sim, {"good": {"model": "perfect", "schedule": "0 6 * * *"}}
    )
    now = datetime.now(UTC)
    slot = last_fire_at_or_before(parse_cron("0 6 * * *"), now - timedelta(hours=6))
    assert slot is not None
    days = [slot - timedelta(days=n) for n in range(9, 3, -1)]  # 9 to 4 days before
    for day in days:
        run(["run", "-c", str(config_path), "--at", day.isoformat()])
    config = load_config(config_path, {})
    engine = open_database(config.database_url)

    def check(at: datetime) -> None:
        check_no_data(engine, config, now=at, grace=timedelta(hours=6), targets=[])

    check(days[-1] + timedelta(hours=7))
    assert status_json(config_path, capsys)["routes"][0]["state"] == "healthy"
    late_at = days[-1] + timedelta(days=1, hours=7)  # three days ago: found late then
    check(late_at)

    route = status_json(config_path, capsys)["routes"][0]
    assert route["state"] == "unknown"
    assert route["no_data_since"] == late_at.isoformat().replace("+00:00", "Z")
    assert route["last_run"]["at"] == days[-1].isoformat().replace("+00:00", "Z")
    assert run(["status", "-c", str(config_path)]) == 0
    table = capsys.readouterr().out
    assert "unknown (no data)" in table
    assert f"good: scheduled runs late since {late_at:%Y-%m-%d %H:%M} UTC" in table

    # A missing slot after the one found late, by hand: the newest is still late.
    run(["run", "-c", str(config_path), "--at", (slot - timedelta(days=1)).isoformat()])
    assert status_json(config_path, capsys)["routes"][0]["state"] == "unknown"
    # The newest slot past the grace, by hand, with no daemon to check again: not late.
    run(["run", "-c", str(config_path), "--at", slot.isoformat()])
    route = status_json(config_path, capsys)["routes"][0]
    assert (route["state"], route["no_data_since"]) == ("healthy", None)
    engine.dispose()


def test_a_route_taken_off_its_schedule_is_not_late(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No check clears the state of an unscheduled route, so status ignores it."""
    routes = {"good": {"model": "perfect", "schedule": "0 6 * * *"}}
    config_path = write_project(tmp_path, sim, routes)
    for day in range(1, 7):
        run(["run", "-c", str(config_path), "--at", f"2026-11-0{day}T06:00:00Z"])
    config = load_config(config_path, {})
    engine = open_database(config.database_url)
    check_no_data(
        engine,
        config,
        now=datetime(2026, 11, 9, 13, tzinfo=UTC),
        grace=timedelta(hours=6),
        targets=[],
    )
    engine.dispose()
    assert status_json(config_path, capsys)["routes"][0]["state"] == "unknown"

    write_project(tmp_path, sim, {"good": {"model": "perfect"}})

    route = status_json(config_path, capsys)["routes"][0]
    assert (route["state"], route["no_data_since"]) == ("healthy", None)
