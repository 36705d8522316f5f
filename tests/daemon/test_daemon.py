"""The real daemon as a subprocess: schedules, SIGTERM and resume, HTTP, two replicas."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from daemon_process import daemon
from receivers import Receiver, receiver
from routewatch.cli import run
from routewatch.config import load_config
from routewatch.daemon.metrics import database_down
from routewatch.daemon.service import Daemon
from routewatch.store.migrate import create_engine_for, open_database
from routewatch.store.outbox import enqueue
from runner_project import faq_simulator, rows, write_project

TOKEN = "daemon-token-value-0123456789"
ENV = {"RW_DAEMON_TOKEN": TOKEN}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "sim"
    folder.mkdir()
    with faq_simulator(folder) as url:
        yield url


def project(
    tmp_path: Path,
    sim: str,
    db_url: str,
    schedule: str,
    *,
    model: str = "perfect",
    hook: Receiver | None = None,
    items: list[dict[str, Any]] | None = None,
    **scheduler: Any,
) -> Path:
    path = write_project(
        tmp_path,
        sim,
        {"faq-bot": {"model": model, "schedule": schedule}},
        database_url=db_url,
        provider={"max_concurrency": 1},
        items=items,
    )
    config = yaml.safe_load(path.read_text())
    config["server"] = {"token_env": "RW_DAEMON_TOKEN"}
    config["scheduler"] = {"dispatch_every_s": 0.5, "stop_timeout_s": 0.5, **scheduler}
    config["policies"] = {"chat": {"chain": ["faq-bot"], "mode": "auto"}}
    if hook is not None:
        config["alerts"] = {"webhooks": [{"url": f"{hook.url}/hook"}]}
    path.write_text(yaml.safe_dump(config))
    return path


def sluggish(sim: str, latency_ms: float) -> None:
    """The simulator's ``sluggish`` model: always right, ``latency_ms`` per answer."""
    httpx.patch(
        f"{sim}/admin/models/sluggish", json={"quality": 1.0, "latency_ms": {"fixed": latency_ms}}
    ).raise_for_status()


def questions(n: int) -> list[dict[str, Any]]:
    """``n`` items that pass any answer: runs whose length is the simulator's latency."""
    return [
        {"id": f"q{i}", "input": f"question {i}", "checks": [{"max_chars": 9999}]} for i in range(n)
    ]


def wait_until(check: Any, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def completed(db_url: str) -> list[dict[str, Any]]:
    return [r for r in rows(db_url, "runs") if r["status"] == "completed"]


def test_runs_happen_on_schedule_and_the_http_surface_answers(
    tmp_path: Path, sim: str, db_url: str
) -> None:
    config = project(tmp_path, sim, db_url, "*/2 * * * * *")
    data = yaml.safe_load(config.read_text())
    data["reports"] = {"dir": "reports", "schedule": "*/3 * * * * *"}
    config.write_text(yaml.safe_dump(data))

    with daemon(config, ENV) as d:
        wait_until(lambda: len(completed(db_url)) >= 3, what="three scheduled runs")
        wait_until(lambda: any((tmp_path / "reports").glob("*.html")), what="the weekly report")
        reports = httpx.get(f"{d.url}/reports/")
        health = httpx.get(f"{d.url}/healthz")
        metrics = httpx.get(f"{d.url}/metrics").text
        policy = httpx.get(f"{d.url}/policy/chat")
        anonymous = httpx.post(f"{d.url}/runs", json={"routes": ["faq-bot"]})
        wrong = httpx.post(
            f"{d.url}/runs", json={}, headers={"Authorization": "Bearer not-the-token"}
        )
        bad = httpx.post(
            f"{d.url}/runs",
            json={"routes": ["nope"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        pin_anonymous = httpx.post(f"{d.url}/policy/chat/pin", json={"routes": ["faq-bot"]})
        pinned = httpx.post(f"{d.url}/policy/chat/pin", json={"routes": ["faq-bot"]}, headers=auth)
        unpinned = httpx.post(f"{d.url}/policy/chat/unpin", headers=auth)
        assert d.terminate() == 0

    runs = completed(db_url)
    slots = [r["at"] for r in runs]
    assert len(set(slots)) == len(slots), "each slot ran once"
    assert all(s.second % 2 == 0 and s.microsecond == 0 for s in slots)
    assert health.status_code == 200
    assert health.json()["scheduler"] is True
    (written,) = (tmp_path / "reports").glob("*.html")
    assert written.name in reports.text
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    assert any(name.startswith("routewatch_") for name in families)
    assert policy.status_code == 200
    assert policy.json()["chain"] == ["faq-bot"]
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert (bad.status_code, bad.json()) == (
        422,
        {"error": "unknown route(s) nope; known: faq-bot"},
    )
    assert pin_anonymous.status_code == 401
    assert (pinned.status_code, pinned.json()["changed"]) == (200, True)
    assert pinned.json()["pins"] == ["faq-bot"]
    assert (unpinned.status_code, unpinned.json()["changed"]) == (200, True)
    assert unpinned.json()["pins"] is None
    versions = rows(db_url, "policy_versions")
    assert [(v["pins"], v["actor"]) for v in versions][-2:] == [(["faq-bot"], "api"), (None, "api")]
    assert TOKEN not in d.log()
    # One line per run, saying it completed; no migration chatter on the new database.
    assert re.search(r"run \d+ faq-bot x \S+ at \S+: completed score=", d.log()), d.log()
    assert "alembic" not in d.log().lower()


def test_sigterm_mid_run_leaves_a_run_that_the_next_start_resumes(
    tmp_path: Path, sim: str, db_url: str
) -> None:
    sluggish(sim, 700)
    # Daily at midnight UTC, with a grace of two days: the start catches up today's slot.
    # No judge: each result is stored as soon as its call returns.
    items = questions(6)
    config = project(
        tmp_path, sim, db_url, "0 0 * * *", model="sluggish", items=items, misfire_grace_s=172800
    )

    with daemon(config, ENV) as d:
        wait_until(lambda: len(rows(db_url, "results")) >= 1, what="the first result")
        started = time.monotonic()
        assert d.terminate(timeout=20) == 0
        assert time.monotonic() - started < 15, "the stop is bounded"
    (run,) = rows(db_url, "runs")
    assert run["status"] == "running", "left resumable, not failed"
    assert (run["owner"], run["heartbeat_at"]) == (None, None), "handed over: no wait"
    stored = len(rows(db_url, "results"))
    assert stored < 6
    # The stop was mid-run; the resumed rest need not be slow (the config is unchanged).
    httpx.patch(
        f"{sim}/admin/models/sluggish", json={"latency_ms": {"fixed": 2}}
    ).raise_for_status()

    with daemon(config, ENV) as d:
        wait_until(lambda: len(completed(db_url)) == 1, what="the resumed run to complete")
        d.terminate()

    (resumed,) = rows(db_url, "runs")
    assert resumed["id"] == run["id"]
    assert resumed["at"] == run["at"]
    results = rows(db_url, "results")
    assert len(results) == 6
    assert len({(r["item_id"], r["sample"]) for r in results}) == 6, "nothing written twice"


@pytest.mark.postgres
def test_an_interrupted_run_of_an_edited_eval_set_is_cancelled_not_retried_forever(
    tmp_path: Path, sim: str
) -> None:
    """It can never resume as it was; left running, catch-up would retry it each minute."""
    sluggish(sim, 700)
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(
        tmp_path,
        sim,
        db_url,
        "0 0 * * *",
        model="sluggish",
        items=questions(6),
        misfire_grace_s=172800,
    )
    with daemon(config, ENV) as d:
        wait_until(lambda: len(rows(db_url, "results")) >= 1, what="the first result")
        assert d.terminate(timeout=20) == 0
    (interrupted,) = rows(db_url, "runs")
    assert interrupted["status"] == "running"
    (tmp_path / "evals" / "bench.yaml").write_text(yaml.safe_dump({"items": questions(7)}))
    httpx.patch(f"{sim}/admin/models/sluggish", json={"latency_ms": {"fixed": 2}})

    with daemon(config, ENV) as d:
        d.wait_for(f"run {interrupted['id']} faq-bot x bench at ")
        d.wait_for("was interrupted and its eval set changed since: cancelled")
        d.terminate()

    (cancelled,) = [r for r in rows(db_url, "runs") if r["id"] == interrupted["id"]]
    assert (cancelled["status"], cancelled["error_message"]) == (
        "cancelled",
        "interrupted, and the eval set changed since",
    )


def test_two_daemons_run_each_slot_once_and_deliver_each_event_once(
    tmp_path: Path, sim: str, pg_url: str
) -> None:
    with receiver() as hook:
        config = project(tmp_path, sim, pg_url, "*/2 * * * * *", hook=hook)
        engine = open_database(pg_url)
        with daemon(config, ENV) as first, daemon(config, ENV) as second:
            for _ in range(4):
                with engine.begin() as conn:
                    for n in range(10):
                        enqueue(
                            conn,
                            {"event": "incident.opened", "id": str(uuid.uuid4()), "n": n},
                            load_config(config, ENV).alerts.targets(),
                            datetime.now(UTC),
                        )
                time.sleep(1.5)
            wait_until(lambda: len(completed(pg_url)) >= 4, what="four slots")
            wait_until(lambda: len(hook.delivered()) >= 40, what="every event delivered")
            first.terminate()
            second.terminate()
        engine.dispose()

        roles = sorted(
            next(line for line in d.lines if "serving on" in line).rsplit(", ", 1)[1]
            for d in (first, second)
        )
        ids = Counter(r.headers["x-routewatch-delivery"] for r in hook.delivered())
    runs = rows(pg_url, "runs")
    slots = Counter((r["eval_set_name"], r["at"]) for r in runs)
    assert slots
    assert max(slots.values()) == 1, "every slot has exactly one run"
    assert len(ids) == 40
    assert set(ids.values()) == {1}, "every event delivered once"
    assert roles == ["follower)", "leader)"], "one replica runs the schedules"
    assert all(r["status"] == "completed" for r in runs)


def test_a_stop_that_cuts_a_scheduled_run_short_logs_no_error(tmp_path: Path, sim: str) -> None:
    """The drain's cancel of a run the scheduler started is the stop working, not a failed
    job: one warning, no APScheduler traceback at error level."""
    sluggish(sim, 700)
    items = questions(6)
    # Every 5 s with half a second of grace: the start seldom catches a slot up, and when
    # it does (a start within 0.5 s of a slot) the run is not the scheduler's: again.
    for attempt in range(4):
        root = tmp_path / f"attempt-{attempt}"
        root.mkdir()
        db_url = f"sqlite:///{root / 'rw.db'}"
        config = project(
            root, sim, db_url, "*/5 * * * * *", model="sluggish", items=items, misfire_grace_s=0.5
        )
        with daemon(config, ENV) as d:
            wait_until(lambda u=db_url: len(rows(u, "results")) >= 1, what="a scheduled result")
            assert d.terminate(timeout=20) == 0
            lines = list(d.lines)
        if not any("catching up" in line for line in lines):
            break
    else:
        pytest.fail("every start caught a slot up")

    assert any("still going after" in line for line in lines), lines
    assert not [line for line in lines if "Traceback" in line or "raised an exception" in line]


def test_the_interval_jobs_wait_out_a_database_outage_in_one_line_each(
    tmp_path: Path, sim: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The outbox is delivered every few seconds: a traceback each time flooded the log."""
    config = project(tmp_path, sim, f"sqlite:///{tmp_path / 'rw.db'}", "0 0 1 1 *")
    d = Daemon(config, ENV)
    d.engine.dispose()
    d.engine = create_engine_for(f"sqlite:///{tmp_path / 'gone' / 'rw.db'}")
    assert d.leader.acquire(), "the one daemon leads (a lock file beside rw.db)"
    try:
        asyncio.run(d._dispatch_job())
        asyncio.run(d._no_data_job())
        asyncio.run(d._catch_up())
        asyncio.run(d._cycle(["faq-bot"], None))
        # Asked for over HTTP now, a run would be accepted and lost: the answer is 503.
        with pytest.raises(OperationalError) as refused:
            asyncio.run(d.trigger(["faq-bot"]))
    finally:
        d.leader.release()
        d.engine.dispose()
    assert database_down(refused.value)
    assert not d._active

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(":")[0] for w in warnings] == [
        "outbox dispatch skipped",
        "late-run check skipped",
        "catch-up skipped",
        "run of faq-bot stopped",
    ]
    assert all("the database is unavailable: " in w for w in warnings)
    # Never claimed, a run asked for now is not resumed by a catch-up.
    assert warnings[-1].endswith("; ask for it again once it is back")
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


def test_sighup_reloads_the_config_and_its_schedules(tmp_path: Path, sim: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *")  # once a year: nothing runs

    with daemon(config, ENV) as d:
        data = yaml.safe_load(config.read_text())
        data["routes"]["faq-bot"]["schedule"] = "*/2 * * * * *"
        data["database_url"] = f"sqlite:///{tmp_path / 'other.db'}"
        config.write_text(yaml.safe_dump(data))
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("config reloaded")
        # Read once, at start: said, and the old database kept.
        d.wait_for("`database_url` changed; the daemon keeps the old value until it is restarted")
        wait_until(lambda: len(completed(db_url)) >= 1, what="a run on the new schedule")
        config.write_text("routes: [this is not valid")
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("config not reloaded")
        before = len(completed(db_url))
        wait_until(lambda: len(completed(db_url)) > before, what="runs on the kept config")
        assert d.terminate() == 0
    assert not (tmp_path / "other.db").exists()


def test_publishers_new_to_the_config_get_the_stored_chain_at_start_and_at_reload(
    tmp_path: Path, sim: str
) -> None:
    """Without it, a publisher added or moved waits for the policy's next change."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *")  # once a year: nothing runs
    assert run(["policy", "pin", "-c", str(config), "chat", "faq-bot"]) == 0  # version 1

    def publish_to(path: str) -> None:
        data = yaml.safe_load(config.read_text())
        data["policies"]["chat"]["publish"] = [{"type": "json", "path": path}]
        config.write_text(yaml.safe_dump(data))

    publish_to("out/first.json")
    with daemon(config, ENV) as d:
        wait_until((tmp_path / "out" / "first.json").exists, what="the added publisher's file")
        assert json.loads((tmp_path / "out" / "first.json").read_text())["version"] == 1

        (tmp_path / "blocked").write_text("a file where the publisher's folder should be")
        publish_to("blocked/second.json")
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("config reloaded")
        wait_until(
            lambda: any(m["status"] == "pending" and m["attempts"] for m in publishes(db_url)),
            what="a failed attempt at the blocked publisher",
        )
        publish_to("out/third.json")
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("config reloaded", occurrences=2)
        wait_until((tmp_path / "out" / "third.json").exists, what="the moved publisher's file")
        assert d.terminate() == 0
    assert json.loads((tmp_path / "out" / "third.json").read_text())["version"] == 1
    states = {m["target"]: (m["status"], m["last_error"] or "") for m in publishes(db_url)}
    assert len(states) == 3
    assert sorted(status for status, _ in states.values()) == ["dead", "delivered", "delivered"]
    [error] = [error for status, error in states.values() if status == "dead"]
    assert error.startswith("superseded: the publisher is no longer configured")


def publishes(db_url: str) -> list[dict[str, Any]]:
    return [m for m in rows(db_url, "outbox") if m["event"] == "policy.publish"]


def test_a_reload_reads_the_files_off_the_event_loop(tmp_path: Path, sim: str) -> None:
    """A large eval set takes seconds to load; meanwhile the loop keeps serving (here a
    POST, which waits for it; calls in flight would have their latency measured long)."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *")
    big = tmp_path / "evals" / "big.jsonl"
    with big.open("w") as out:
        for i in range(100_000):
            out.write(json.dumps({"id": f"b{i}", "input": f"question {i}", "reference": "x"}))
            out.write("\n")

    with daemon(config, ENV) as d:
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("SIGHUP: reloading the config and eval sets")
        started = time.monotonic()
        answer = httpx.post(
            f"{d.url}/runs",
            json={"routes": ["faq-bot"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        waited = time.monotonic() - started
        reloaded_meanwhile = any("config reloaded" in line for line in d.lines)
        d.wait_for("config reloaded")
        loading = _seconds_between(d.lines, "SIGHUP: reloading", "config reloaded")
        wait_until(lambda: len(completed(db_url)) == 1, what="the run asked for")

        # Signals while a reload is under way queue one more reload, not one each.
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("SIGHUP: reloading", occurrences=2)
        time.sleep(0.3)  # reading the files now
        for _ in range(2):
            d.process.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        wait_until(lambda: count(d, "config reloaded") == 3, what="the queued reload")
        time.sleep(loading / 2)
        queued = (count(d, "SIGHUP: reloading"), count(d, "config reloaded"))
        # A stop during a reload drops it: no jobs rebuilt after "stopping".
        d.process.send_signal(signal.SIGHUP)
        d.wait_for("SIGHUP: reloading", occurrences=4)
        assert d.terminate() == 0

    assert answer.status_code == 202, answer.text
    assert loading > 0.5, "the set loads for long enough to tell"
    assert not reloaded_meanwhile
    assert waited < loading / 2, d.log()
    assert queued == (3, 3), d.log()
    stopping = next(i for i, line in enumerate(d.lines) if "stopping:" in line)
    assert not [line for line in d.lines[stopping:] if "config reloaded" in line], d.log()


def count(d: Any, text: str) -> int:
    """Log lines of daemon ``d`` holding ``text``."""
    return sum(text in line for line in d.lines)


def _seconds_between(lines: list[str], first: str, then: str) -> float:
    """Seconds between the log lines holding ``first`` and ``then`` (text log format)."""
    stamps = []
    for text in (first, then):
        line = next(line for line in lines if text in line)
        stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC))
    return (stamps[1] - stamps[0]).total_seconds()


@pytest.mark.postgres
def test_an_edited_eval_set_is_replayed_by_the_next_cycle_without_sighup(
    tmp_path: Path, sim: str
) -> None:
    """The daemon must not replay the version it started with while the CLI replays the
    new one; a broken edit keeps the running sets and is said once."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *", items=questions(2))
    bench = tmp_path / "evals" / "bench.yaml"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def run_now(count: int) -> dict[str, Any]:
        time.sleep(1.1)  # a second of its own: a slot of its own
        httpx.post(f"{d.url}/runs", json={"routes": []}, headers=auth).raise_for_status()
        wait_until(lambda: len(completed(db_url)) == count, what=f"run {count}")
        return completed(db_url)[-1]

    with daemon(config, ENV) as d:
        assert run_now(1)["items_total"] == 2
        bench.write_text(yaml.safe_dump({"items": questions(3)}))

        assert run_now(2)["items_total"] == 3
        d.wait_for("eval files changed on disk: reloading the config and eval sets")
        bench.write_text("items: [this is not valid")
        assert run_now(3)["items_total"] == 3, "the running sets kept"
        assert run_now(4)["items_total"] == 3
        assert d.terminate() == 0
    assert sum("config not reloaded" in line for line in d.lines) == 1, d.log()


def test_an_edited_judge_template_and_a_reload_fixed_by_the_config_are_picked_up(
    tmp_path: Path, sim: str
) -> None:
    """A set's judge template is part of its version; a reload that failed for want of a
    config change is tried again when the config changes."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *")
    faq = tmp_path / "evals" / "support-faq.yaml"
    template = tmp_path / "evals" / "judge.j2"
    grade = (
        "Grade {{ criterion }} from {{ scale_min }} to {{ scale_max }}.\n"
        "<output>{{ output }}</output>\n"
        '{% if not structured %}Reply as JSON with "reasoning" and "score".{% endif %}\n'
    )
    template.write_text(grade)
    faq.write_text(faq.read_text() + "judge_template: judge.j2\n")
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def eval_set_of_run(count: int) -> int:
        time.sleep(1.1)  # a second of its own: a slot of its own
        httpx.post(f"{d.url}/runs", json={"routes": []}, headers=auth).raise_for_status()
        wait_until(lambda: len(completed(db_url)) == count, what=f"run {count}")
        return int(completed(db_url)[-1]["eval_set_id"])

    with daemon(config, ENV) as d:
        first = eval_set_of_run(1)
        template.write_text("Be strict. " + grade)
        second = eval_set_of_run(2)
        faq.write_text(faq.read_text().replace("judge: default", "judge: strict"))
        assert eval_set_of_run(3) == second, "an unknown judge: the running sets kept"
        d.wait_for("config not reloaded")
        data = yaml.safe_load(config.read_text())
        data["judges"]["strict"] = dict(data["judges"]["default"])
        config.write_text(yaml.safe_dump(data))
        fourth = eval_set_of_run(4)
        assert d.terminate() == 0
    assert len({first, second, fourth}) == 3, "each edit replayed as a new version"
    assert sum("config not reloaded" in line for line in d.lines) == 1, d.log()


def test_a_replica_that_dies_mid_run_has_its_run_resumed_by_another(
    tmp_path: Path, sim: str, pg_url: str
) -> None:
    sluggish(sim, 700)
    items = questions(6)
    config = project(
        tmp_path, sim, pg_url, "0 0 * * *", model="sluggish", items=items, misfire_grace_s=172800
    )

    with daemon(config, ENV) as leader:
        wait_until(lambda: len(rows(pg_url, "results")) >= 1, what="the first result")
        with daemon(config, ENV) as follower:
            assert "follower" in next(line for line in follower.lines if "serving on" in line)
            leader.process.kill()
            leader.process.wait()  # reaped: its pid is gone, as a dead replica's would be
            follower.wait_for("became the scheduler leader")
            wait_until(lambda: len(completed(pg_url)) == 1, what="the run resumed")
            follower.terminate()

    (run,) = rows(pg_url, "runs")
    results = rows(pg_url, "results")
    assert len({(r["item_id"], r["sample"]) for r in results}) == len(results) == 6
    assert run["status"] == "completed"


def test_serve_on_a_port_in_use_says_so_and_exits_2(tmp_path: Path, sim: str) -> None:
    import socket
    import subprocess
    import sys

    config = project(tmp_path, sim, f"sqlite:///{tmp_path / 'rw.db'}", "0 6 * * *")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "routewatch", "serve", "-c", str(config), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **ENV},
        )

    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs") == []


def json_on(port: int) -> list[str]:
    return ["--port", str(port), "--log-format", "json"]


def test_json_logs_are_json_on_every_line_uvicorns_and_a_failed_starts_too(
    tmp_path: Path, sim: str
) -> None:
    import socket
    import subprocess
    import sys

    config = project(tmp_path, sim, f"sqlite:///{tmp_path / 'rw.db'}", "0 0 1 1 *")
    with daemon(config, ENV, args=("--log-format", "json")) as d:
        host, port = d.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
        d.wait_for("Invalid HTTP request received")
        assert d.terminate() == 0
        lines = list(d.lines)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        failed = subprocess.run(
            [sys.executable, "-m", "routewatch", "serve", "-c", str(config), *json_on(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **ENV},
        )

    entries = [json.loads(line) for line in lines]
    assert {e["logger"] for e in entries} >= {"routewatch.daemon", "uvicorn.error"}
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", e["time"]) for e in entries
    )
    assert failed.returncode == 2
    (error,) = [json.loads(line) for line in failed.stderr.splitlines()]
    assert error["level"] == "error"
    assert error["message"] == f"cannot listen on 127.0.0.1:{port}: Address already in use"


def test_the_start_names_a_secret_variable_that_is_not_set(tmp_path: Path, sim: str) -> None:
    """Said at start, not first found by a refused POST or a failed run."""
    config = project(tmp_path, sim, f"sqlite:///{tmp_path / 'rw.db'}", "0 0 1 1 *")

    with daemon(config, {"RW_DAEMON_TOKEN": ""}) as d:
        d.wait_for("RW_DAEMON_TOKEN is not set: every POST to the daemon is refused with 403")
        assert d.terminate() == 0


def test_a_slot_that_fires_while_its_route_runs_waits_for_it(tmp_path: Path, sim: str) -> None:
    """Runs longer than the schedule's interval: one at a time, not a pile-up of slots."""
    sluggish(sim, 1000)
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    # 3 items one at a time: about 3 s a run, against a slot every 2 s.
    # A grace shorter than a run: the catch-up could not run a slot that waited.
    config = project(
        tmp_path,
        sim,
        db_url,
        "*/2 * * * * *",
        model="sluggish",
        items=questions(3),
        misfire_grace_s=1,
    )

    with daemon(config, ENV) as d:
        d.wait_for("waits for the run of it in flight; it runs once that is stored")
        d.wait_for("which waited for the run before")
        wait_until(lambda: len(completed(db_url)) >= 2, timeout=40, what="two runs")
        assert d.terminate() == 0

    runs = sorted(rows(db_url, "runs"), key=lambda r: r["started_at"])
    for before, after in itertools.pairwise(runs):
        assert before["finished_at"] is not None
        assert after["started_at"] >= before["finished_at"], runs


def test_a_waiting_slot_runs_only_for_a_route_still_scheduled_and_within_the_grace(
    tmp_path: Path, sim: str
) -> None:
    """A reload may take a route away, and leadership may be lost meanwhile: neither
    slot runs when the route's run ends, and neither stays waiting to run later."""
    d = Daemon(project(tmp_path, sim, f"sqlite:///{tmp_path / 'rw.db'}", "0 0 1 1 *"), ENV)
    now = datetime.now(UTC)
    spawned: list[list[str]] = []

    async def release(route: str, slot: datetime) -> None:
        task = asyncio.current_task()
        assert task is not None
        d._track(task, [route])
        d._waiting_slots[route] = slot
        d._release(task)
        started = [t for t in d._active if t is not task]
        spawned.extend(d._running_routes[t] for t in started)
        await asyncio.sleep(0)  # let them begin, so that their cycles are awaited
        for t in started:  # what ran is not the point here
            t.cancel()
        await asyncio.gather(*started, return_exceptions=True)
        d._active.discard(task)

    try:
        asyncio.run(release("faq-bot", now))  # not the leader
        assert d._waiting_slots == {}
        assert d.leader.acquire()
        asyncio.run(release("gone", now))
        assert spawned == []
        asyncio.run(release("faq-bot", now))
        assert spawned == [["faq-bot"]]
        assert d._waiting_slots == {}
    finally:
        d.leader.release()
        d.engine.dispose()


def test_a_second_signal_stops_without_waiting_for_the_runs(tmp_path: Path, sim: str) -> None:
    """The first SIGTERM gives runs stop_timeout_s (here a minute); a second one cuts them
    short now, leaving them resumable as a timed-out stop does."""
    sluggish(sim, 700)
    items = questions(20)
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(
        tmp_path,
        sim,
        db_url,
        "0 0 * * *",
        model="sluggish",
        items=items,
        misfire_grace_s=172800,
        stop_timeout_s=60,
    )

    with daemon(config, ENV) as d:
        wait_until(lambda: len(rows(db_url, "results")) >= 1, what="the first result")
        d.process.send_signal(signal.SIGTERM)
        d.wait_for("stopping: no new runs")
        started = time.monotonic()
        assert d.terminate(timeout=20) == 0  # the second SIGTERM
        took = time.monotonic() - started
        lines = list(d.lines)

    assert took < 10, "not the minute the first signal allows"
    assert any("1 run(s) still going at the second signal" in line for line in lines), lines
    (run,) = rows(db_url, "runs")
    assert run["status"] == "running", "left resumable"
    assert len(rows(db_url, "results")) < 20


def test_a_run_asked_for_while_one_is_in_flight_is_not_started_twice(
    tmp_path: Path, sim: str
) -> None:
    """Each request is a slot of its own: two a second apart paid for two whole runs."""
    sluggish(sim, 300)
    items = questions(8)
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, db_url, "0 0 1 1 *", model="sluggish", items=items)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    with daemon(config, ENV) as d:
        first = httpx.post(f"{d.url}/runs", json={"routes": []}, headers=auth)
        time.sleep(1.1)  # a later second: a slot of its own
        second = httpx.post(f"{d.url}/runs", json={"routes": ["faq-bot"]}, headers=auth)
        wait_until(lambda: len(completed(db_url)) == 1, what="the run")
        time.sleep(0.5)
        assert d.terminate() == 0

    assert (first.status_code, first.json()) == (
        202,
        {"accepted": ["faq-bot"], "already_running": []},
    )
    assert (second.status_code, second.json()) == (
        202,
        {"accepted": [], "already_running": ["faq-bot"]},
    )
    assert len(rows(db_url, "runs")) == 1


def test_two_requests_in_one_pass_of_the_loop_start_the_route_once(
    tmp_path: Path, sim: str
) -> None:
    """A route is busy from the moment its cycle is spawned, not from when it first runs."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    d = Daemon(project(tmp_path, sim, db_url, "0 0 1 1 *"), ENV)

    async def both() -> tuple[list[str], list[str]]:
        first, second = await asyncio.gather(d.trigger([]), d.trigger(["faq-bot"]))
        await asyncio.gather(*list(d._active))
        return first, second

    try:
        assert asyncio.run(both()) == (["faq-bot"], [])
    finally:
        d.engine.dispose()
    assert len(rows(db_url, "runs")) == 1
