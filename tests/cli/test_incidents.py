"""`routewatch incidents`: every open incident, or the newest of all, as a table or JSON;
`incidents resolve ID` closes one by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from receivers import Receiver, receiver
from routewatch.cli import run
from routewatch.store.migrate import open_database
from routewatch.store.tables import IncidentRow, IncidentStatus
from runner_project import rows
from store_rows import add_run, open_incident

AT = datetime(2026, 11, 9, 6, tzinfo=UTC)
HOOK_SECRET = "incidents-hook-secret"


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
    (listed,) = json.loads(incidents(config, capsys, "--json", "--route", "b"))
    assert (listed["id"], listed["configured"]) == (2, False)
    assert all(
        i["configured"] for i in json.loads(incidents(config, capsys, "--json", "--route", "a"))
    )


def test_an_unknown_route_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["incidents", "-c", str(config), "--route", "nope"]) == 1
    assert "unknown route(s) nope for --route; known: a, b, c" in capsys.readouterr().err


@pytest.fixture
def hook(config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver the config's alerts go to."""
    monkeypatch.setenv("RW_INCIDENTS_HOOK", HOOK_SECRET)
    with receiver() as r:
        data = yaml.safe_load(config.read_text())
        data["alerts"] = {
            "webhooks": [{"url": f"{r.url}/hook", "secret_env": "RW_INCIDENTS_HOOK"}],
            "delivery": {"backoff_initial_s": 0.05, "run_wait_s": 2},
        }
        config.write_text(yaml.safe_dump(data))
        yield r


def resolve(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["incidents", "resolve", "-c", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_resolve_closes_an_incident_by_hand_and_announces_it(
    config: Path, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = resolve(config, capsys, "2", "--reason", "provider  fixed\nit <b>")

    assert code == 0
    assert out == "incident #2 (b · faq · score) resolved by hand\n"
    assert [ln.split()[0] for ln in incidents(config, capsys).splitlines()[1:]] == ["#3"]
    every = incidents(config, capsys, "--all").splitlines()
    assert every[2].split()[-6] == "resolved"  # resolved <date> <time> by hand (cli)
    assert every[2].endswith("by hand (cli)")
    (listed,) = json.loads(incidents(config, capsys, "--all", "--json", "--route", "b"))
    assert listed["status"] == "resolved"
    assert (listed["resolved_by"], listed["resolution_reason"]) == ("cli", "provider fixed it <b>")
    assert listed["resolved_at"].endswith("Z")
    (event,) = [r.json() for r in hook.delivered()]
    assert event["event"] == "incident.resolved"
    assert (event["incident_id"], event["route"], event["metric"]) == (2, "b", "score")
    assert (event["resolved_by"], event["reason"]) == ("cli", "provider fixed it <b>")
    assert (event["run_id"], event["observed"]) == (None, None)


def test_resolving_twice_changes_nothing_the_second_time(
    config: Path, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    assert resolve(config, capsys, "2")[0] == 0

    code, out, _ = resolve(config, capsys, "2", "--reason", "again")

    assert code == 0
    assert out.startswith("incident #2 (b · faq · score) was already resolved 20")
    assert out.endswith("by hand (cli); nothing changed\n")
    assert len(hook.delivered()) == 1, "one announcement"
    (listed,) = json.loads(incidents(config, capsys, "--all", "--json", "--route", "b"))
    assert listed["resolution_reason"] is None, "the first resolution stands"


def test_an_incident_a_run_resolved_is_not_resolved_again(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = resolve(config, capsys, "1")

    assert code == 0
    assert out == (
        "incident #1 (a · faq · score) was already resolved 2026-11-11 06:00 UTC after "
        "healthy runs; nothing changed\n"
    )


@pytest.mark.parametrize("incident", ["99", "0", "2147483648", str(10**20)])
def test_resolving_an_unknown_incident_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str], incident: str
) -> None:
    """Past the id column's range too, where the database itself would refuse the query."""
    code, out, err = resolve(config, capsys, incident)

    assert code == 1
    assert out == ""
    assert f"no incident #{incident}; nothing was resolved; `routewatch incidents --all`" in err


def test_several_incidents_are_resolved_at_once_or_none_if_one_is_unknown(
    config: Path, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = resolve(config, capsys, "2", "98", "3", "99")

    assert code == 1
    assert "no incident #98, #99; nothing was resolved" in err
    assert [ln.split()[0] for ln in incidents(config, capsys).splitlines()[1:]] == ["#3", "#2"]

    code, out, _ = resolve(config, capsys, "3", "2", "3", "--reason", "route retired")

    assert code == 0
    assert out.splitlines() == [
        "incident #3 (a · faq · score) resolved by hand",
        "incident #2 (b · faq · score) resolved by hand",
    ]
    assert incidents(config, capsys) == "no open incidents\n"
    assert sorted(r.json()["incident_id"] for r in hook.delivered()) == [2, 3]


def test_a_database_error_part_way_resolves_none_of_them(
    config: Path, hook: Receiver, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The database refuses the second resolution (a trigger here; a lost connection in
    life): the first, written before it, must not stay resolved without the others."""
    engine = open_database(db_url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON incidents WHEN NEW.id = 2 "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE UPDATE ON incidents FOR EACH ROW "
                "WHEN (NEW.id = 2) EXECUTE FUNCTION refuse()"
            )
    engine.dispose()

    code, out, err = resolve(config, capsys, "3", "2")

    assert code == 2, err
    assert "refused" in err
    assert "resolved by hand" not in out
    assert [ln.split()[0] for ln in incidents(config, capsys).splitlines()[1:]] == ["#3", "#2"]
    assert hook.delivered() == []
    assert rows(db_url, "outbox") == []


def test_an_incident_opened_a_little_ahead_is_resolved_at_its_opening_and_alerted_now(
    config: Path, hook: Receiver, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --at` may be up to 5 minutes ahead of the clock."""
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=4)
    engine = open_database(db_url)
    add_run(engine, "c", ahead)
    incident = open_incident(engine, "c", ahead)
    engine.dispose()

    assert resolve(config, capsys, str(incident))[0] == 0

    (listed,) = json.loads(incidents(config, capsys, "--all", "--json", "--route", "c"))
    assert listed["resolved_at"] == listed["opened_at"]
    assert [r.json()["incident_id"] for r in hook.delivered()] == [incident]


def test_the_incident_of_a_route_taken_out_of_the_config_can_be_resolved(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(config.read_text())
    del data["routes"]["b"]
    config.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert run(["incidents", "-c", str(config)]) == 0
    hint = "`routewatch incidents resolve ID` closes one by hand"
    assert hint in capsys.readouterr().err

    assert resolve(config, capsys, "2")[0] == 0

    assert run(["incidents", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["#3"]
    assert hint not in err


def test_the_config_given_before_resolve_is_the_one_used(
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path / "..")  # no routewatch.yaml here
    capsys.readouterr()

    assert run(["incidents", "-c", str(config), "resolve", "2"]) == 0

    assert capsys.readouterr().out == "incident #2 (b · faq · score) resolved by hand\n"


def test_an_option_of_the_list_given_to_resolve_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    assert run(["incidents", "-c", str(config), "--json", "--route", "b", "resolve", "2"]) == 1

    assert "--route, --json only applies to the list, not to `incidents resolve`" in (
        capsys.readouterr().err
    )
    assert [i["id"] for i in json.loads(incidents(config, capsys, "--json"))] == [3, 2]


def test_an_id_that_is_no_number_is_named(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = resolve(config, capsys, "abc")

    assert code == 1
    assert "'abc' is not a valid integer" in err
