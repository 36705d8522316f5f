"""`routewatch incidents`: every open incident, or the newest of all, as a table or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from routewatch.cli import run
from routewatch.store.migrate import open_database
from routewatch.store.tables import IncidentRow, IncidentStatus
from store_rows import add_run, open_incident

AT = datetime(2026, 11, 9, 6, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "routewatch.yaml"
    routes = {n: {"provider": "p", "model": "m", "evals": ["faq"]} for n in ("a", "b", "c")}
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": db_url,
                "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
                "routes": routes,
            }
        )
    )
    engine = open_database(db_url)
    for route in ("a", "b"):
        add_run(engine, route, AT)
    first = open_incident(engine, "a", AT)
    open_incident(engine, "b", AT + timedelta(days=1))
    with engine.begin() as conn:  # a's incident recovered; a new one opened since
        conn.execute(
            update(IncidentRow)
            .where(IncidentRow.id == first)
            .values(status=IncidentStatus.resolved, resolved_at=AT + timedelta(days=2))
        )
    open_incident(engine, "a", AT + timedelta(days=3))
    engine.dispose()
    return path


def incidents(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert run(["incidents", "-c", str(config), *args]) == 0
    return capsys.readouterr().out


def test_open_incidents_newest_first_and_all_with_resolved_ones(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = incidents(config, capsys).splitlines()

    assert lines[0].split()[:3] == ["incident", "route", "eval"]
    assert [ln.split()[:2] for ln in lines[1:]] == [["#3", "a"], ["#2", "b"]]
    assert lines[1].endswith("open, 0 of 3 healthy")
    every = incidents(config, capsys, "--all").splitlines()
    assert [ln.split()[0] for ln in every[1:]] == ["#3", "#2", "#1"]
    assert every[3].endswith("resolved 2026-11-11 06:00")
    assert incidents(config, capsys, "--all", "--limit", "1").count("\n") == 2
    assert incidents(config, capsys, "--limit", "1").count("\n") == 3, "every open one"


def test_json_and_route_filter(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = json.loads(incidents(config, capsys, "--json", "--route", "b"))

    assert [(i["id"], i["route"], i["status"]) for i in found] == [(2, "b", "open")]
    assert found[0]["opened_at"] == "2026-11-10T06:00:00Z"
    assert found[0]["resolved_at"] is None
    assert incidents(config, capsys, "--route", "c") == "no open incidents\n"


def test_a_route_taken_out_of_the_config_keeps_its_incidents_listed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No run will resolve them any more: they must not vanish from sight."""
    data = yaml.safe_load(config.read_text())
    del data["routes"]["b"]
    config.write_text(yaml.safe_dump(data))

    lines = incidents(config, capsys).splitlines()

    assert [ln.split()[:4] for ln in lines[1:]] == [
        ["#3", "a", "faq", "score"],
        ["#2", "b", "(not", "configured)"],
    ]
    assert [i["id"] for i in json.loads(incidents(config, capsys, "--json", "--route", "b"))] == [2]


def test_an_unknown_route_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["incidents", "-c", str(config), "--route", "nope"]) == 1
    assert "unknown route(s) nope for --route; known: a, b, c" in capsys.readouterr().err
