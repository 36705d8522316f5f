"""Detection after each cycle, end to end: simulator -> run -> incidents -> outbox -> status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import text

from routewatch.cli import run
from routewatch.config import load_config
from routewatch.store.migrate import create_engine_for
from runner_project import faq_simulator, rows, write_project

WEBHOOK_SECRET = "s3cret-webhook-value"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    """A simulator of our own: these tests change a model's quality through its admin API."""
    folder = tmp_path / "sim"
    folder.mkdir()
    with faq_simulator(folder) as url:
        yield url


def project(tmp_path: Path, sim: str, db_url: str | None = None) -> Path:
    path = write_project(tmp_path, sim, {"faq-bot": {"model": "perfect"}}, database_url=db_url)
    config = yaml.safe_load(path.read_text())
    config["alerts"] = {
        "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret_env": "RW_TEST_HOOK_SECRET"}],
        # Nothing listens there: don't let each run wait for a retry.
        "delivery": {"run_wait_s": 0},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def day(config: Path, n: int, *extra: str) -> int:
    return run(["run", "-c", str(config), "--at", f"2026-11-{n:02d}T06:00:00Z", *extra])


def six_good_days_then_three_bad(config: Path, sim: str) -> None:
    """Days 1-9: a baseline, then a quality drop that opens score and critical incidents."""
    for n in range(1, 7):
        day(config, n)
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 0.0}).raise_for_status()
    for n in (7, 8, 9):
        day(config, n)


def test_a_drop_opens_one_incident_with_its_event_and_status_shows_it(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_TEST_HOOK_SECRET", WEBHOOK_SECRET)
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    for n in range(1, 7):
        assert day(config, n, "--fail-on-regression") == 0
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 0.0}).raise_for_status()
    capsys.readouterr()

    assert day(config, 7, "--fail-on-regression") == 3

    out = capsys.readouterr()
    incidents = rows(db, "incidents")
    assert [(i["metric"], i["status"]) for i in incidents] == [("score", "open")]
    # One line for the metric, naming every detector that paged and the one incident.
    (line,) = [line for line in out.err.splitlines() if ": score " in line]
    assert line.endswith(f": opened incident #{incidents[0]['id']}")
    assert line.count(" p = ") >= 2, line
    outbox = rows(db, "outbox")
    assert [(o["event"], o["target"]) for o in outbox] == [
        ("incident.opened", webhook_target(config))
    ]
    body = outbox[0]["payload"]
    assert set(body) >= {
        "event",
        "id",
        "at",
        "route",
        "eval_set",
        "metric",
        "observed",
        "baseline_mean",
        "baseline_sd",
        "threshold",
        "detector",
        "p_value",
        "run_id",
        "worst_items",
    }
    assert body["route"] == "faq-bot"
    assert body["observed"] < body["baseline_mean"]
    assert body["worst_items"]
    assert WEBHOOK_SECRET not in json.dumps(
        [rows(db, t) for t in ("outbox", "incidents", "detections")], default=str
    )
    assert run(["status", "-c", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["routes"][0]
    assert status["state"] == "degraded"
    assert status["open_incident"]["metric"] == "score"
    # 6 earlier runs: 5 in the baseline, the newest held back as a (shrunk) guard band.
    assert status["baseline"]["runs"] == 5
    assert status["baseline"]["lower_limit"] is not None


def test_further_bad_runs_attach_and_recovery_resolves_after_recover_runs(
    tmp_path: Path, sim: str
) -> None:
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    six_good_days_then_three_bad(config, sim)
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 1.0}).raise_for_status()
    for n in (10, 11):
        day(config, n)
    still_open = {i["metric"]: i["status"] for i in rows(db, "incidents")}

    day(config, 12)

    # The quality drop, and the critical item that failed on two runs in a row.
    incidents = {i["metric"]: i for i in rows(db, "incidents")}
    assert still_open == {"score": "open", "critical:refund-window": "open"}
    assert {m: i["status"] for m, i in incidents.items()} == dict.fromkeys(still_open, "resolved")
    assert incidents["score"]["last_run_id"] == 9
    events = sorted(
        (o["event"], o["payload"]["metric"], o["payload"]["run_id"]) for o in rows(db, "outbox")
    )
    assert events == [
        ("incident.opened", "critical:refund-window", 8),
        ("incident.opened", "score", 7),
        ("incident.resolved", "critical:refund-window", 12),
        ("incident.resolved", "score", 12),
    ]
    detections = {d["run_id"]: d for d in rows(db, "detections")}
    assert all("score" in detections[r]["in_incident"] for r in (7, 8, 9, 10, 11, 12))


def test_repeating_a_slot_detects_nothing_twice(tmp_path: Path, sim: str) -> None:
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    for n in range(1, 7):
        day(config, n)
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 0.0}).raise_for_status()
    day(config, 7)

    # Nothing is detected again, but the incident is still open: still a regression.
    assert day(config, 7, "--fail-on-regression") == 3

    assert len(rows(db, "incidents")) == 1
    assert len(rows(db, "outbox")) == 1
    assert len(rows(db, "detections")) == 7


def test_detection_works_on_postgresql_too(tmp_path: Path, sim: str, pg_url: str) -> None:
    config = project(tmp_path, sim, pg_url)
    for n in range(1, 7):
        day(config, n)
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 0.0}).raise_for_status()

    assert day(config, 7, "--fail-on-regression") == 3

    assert [i["metric"] for i in rows(pg_url, "incidents")] == ["score"]
    assert len(rows(pg_url, "item_outcomes")) == 7 * 6


def test_runs_that_completed_are_detected_when_another_run_of_the_cycle_fails(
    tmp_path: Path, sim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RW_TEST_MISSING_KEY", raising=False)
    path = write_project(
        tmp_path, sim, {"good": {"model": "perfect"}, "keyless": {"model": "perfect"}}
    )
    config = yaml.safe_load(path.read_text())
    config["providers"]["locked"] = {
        **config["providers"]["sim"],
        "api_key_env": "RW_TEST_MISSING_KEY",
    }
    config["routes"]["keyless"]["provider"] = "locked"
    path.write_text(yaml.safe_dump(config))
    db = f"sqlite:///{tmp_path / 'rw.db'}"

    assert day(path, 1) == 2

    runs = {r["route"]: r for r in rows(db, "runs")}
    assert runs["good"]["status"] == "completed"
    assert [d["run_id"] for d in rows(db, "detections")] == [runs["good"]["id"]]


def test_a_run_left_undetected_by_a_crash_is_detected_by_the_next_run(
    tmp_path: Path, sim: str
) -> None:
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    for n in range(1, 4):
        day(config, n)
    engine = create_engine_for(db)
    with engine.begin() as conn:  # as if the process died between finishing and detecting
        conn.execute(text("DELETE FROM detections WHERE run_id = 3"))
    engine.dispose()

    day(config, 4)

    assert sorted(d["run_id"] for d in rows(db, "detections")) == [1, 2, 3, 4]


def webhook_target(config: Path) -> str:
    """The outbox target of the project's one webhook, keyed by its URL."""
    (target,) = load_config(config, {}).alerts.targets()
    assert target.startswith("webhook:url-")
    return target


def test_a_backfilled_bad_run_is_recorded_but_moves_no_incident(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of the past (``run --at`` an earlier slot) are detected and stored for the
    history and the report, but incidents, alerts and policies follow time."""
    monkeypatch.setenv("RW_TEST_HOOK_SECRET", WEBHOOK_SECRET)
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    for n in range(1, 8):
        assert day(config, n * 2) == 0
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 0.0}).raise_for_status()
    capsys.readouterr()

    assert day(config, 13, "--fail-on-regression") == 0

    out = capsys.readouterr()
    err = out.err
    assert "a backfill: incidents follow time" in err
    assert out.out.splitlines()[-1].endswith("degraded (backfill)"), "bad, judged by itself"
    (late,) = [d for d in rows(db, "detections") if d["at"].day == 13]
    assert any(f["paged"] for f in late["findings"])
    assert "score" in late["in_incident"]
    assert rows(db, "incidents") == []
    assert rows(db, "outbox") == []

    assert day(config, 15, "--fail-on-regression") == 3, "the present still pages"
    assert [i["status"] for i in rows(db, "incidents")] == ["open"]

    # A good day of the past while that incident is open: it was not degraded then.
    httpx.patch(f"{sim}/admin/models/perfect", json={"quality": 1.0}).raise_for_status()
    capsys.readouterr()
    assert day(config, 11, "--fail-on-regression") == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(" healthy (backfill)")
    assert [i["status"] for i in rows(db, "incidents")] == ["open"]

    # The slot again: nothing replayed, its stored figures shown, and still no regression.
    assert day(config, 11, "--fail-on-regression") == 0
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[-2:] == ["already", "completed"]
    assert last[6:9] == ["1.000", "100.0%", "0.0%"], last


def test_runs_whose_every_call_failed_neither_recover_nor_attach_to_quality_incidents(
    tmp_path: Path, sim: str
) -> None:
    """They measured nothing: counted as healthy, an outage told people the route had
    recovered, with `incident.resolved` and a policy restoring it."""
    config = project(tmp_path, sim)
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    six_good_days_then_three_bad(config, sim)
    httpx.patch(
        f"{sim}/admin/models/perfect", json={"quality": 1.0, "faults": {"bad_json": 1.0}}
    ).raise_for_status()

    for n in (10, 11, 12):  # recover_runs (3) runs that answered nothing
        day(config, n)

    incidents = {i["metric"]: i for i in rows(db, "incidents")}
    assert {m: (i["status"], i["healthy_streak"]) for m, i in incidents.items()} == {
        "score": ("open", 0),
        "critical:refund-window": ("open", 0),
        "error_rate": ("open", 0),
    }
    assert incidents["score"]["last_run_id"] == 9, "not attached to runs that measured nothing"
    assert "incident.resolved" not in {o["event"] for o in rows(db, "outbox")}

    healed = {"faults": {"bad_json": 0.0}}
    httpx.patch(f"{sim}/admin/models/perfect", json=healed).raise_for_status()
    for n in (13, 14, 15):
        day(config, n)
    assert {i["metric"]: i["status"] for i in rows(db, "incidents")} == {
        "score": "resolved",
        "critical:refund-window": "resolved",
        "error_rate": "resolved",
    }
