"""The outbox dispatcher against local receivers: signatures, retries, restarts, leases."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from receivers import Receiver, receiver
from routewatch.alerts.dispatch import Dispatcher
from routewatch.alerts.webhook import send_webhook, verify
from routewatch.config import Config, load_config
from routewatch.errors import ConfigError
from routewatch.store.migrate import open_database
from routewatch.store.outbox import claim_due, enqueue
from routewatch.store.policies import reconcile
from runner_project import rows

SECRET = "whsec-0123456789-never-printed"
SLACK_TOKEN = "T0SECRET/B0SECRET/XXXXslacktoken"
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.1, "timeout_s": 2, "run_wait_s": 1}


def write_config(tmp_path: Path, db_url: str, hook: str, **extra: Any) -> Path:
    config = {
        "database_url": db_url,
        "alerts": {
            "webhooks": [{"url": f"{hook}/hook", "secret_env": "RW_TEST_SECRET"}],
            "delivery": FAST,
        },
        **extra,
    }
    path = tmp_path / "routewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("RW_TEST_SECRET", SECRET)
    return {"RW_TEST_SECRET": SECRET}


def load(path: Path, env: dict[str, str]) -> tuple[Config, Engine]:
    config = load_config(path, env)
    return config, open_database(config.database_url)


def event(n: int) -> dict[str, Any]:
    return {
        "event": "incident.opened",
        "id": str(uuid.uuid4()),
        "at": "2026-11-07T06:00:00+00:00",
        "route": "chat-flash",
        "eval_set": "faq",
        "metric": "score",
        "observed": 0.5 + n / 100,
        "worst_items": [],
    }


def raise_events(engine: Engine, config: Config, count: int) -> None:
    with engine.begin() as conn:
        for n in range(count):
            enqueue(conn, event(n), config.alerts.targets(), datetime.now(UTC))


def test_reordering_webhooks_with_events_pending_sends_each_to_its_own_receiver(
    tmp_path: Path, db_url: str, env: dict[str, str]
) -> None:
    with receiver() as first, receiver() as second:
        hooks = [{"url": f"{first.url}/hook"}, {"url": f"{second.url}/hook", "name": "pager"}]
        path = tmp_path / "routewatch.yaml"
        path.write_text(yaml.safe_dump({"database_url": db_url, "alerts": {"webhooks": hooks}}))
        config, engine = load(path, env)
        raise_events(engine, config, 1)
        path.write_text(
            yaml.safe_dump({"database_url": db_url, "alerts": {"webhooks": hooks[::-1]}})
        )
        reordered = load_config(path, env)

        report = Dispatcher(engine, reordered, env).deliver_due()
        engine.dispose()

        assert report.delivered == 2
        assert [len(first.requests), len(second.requests)] == [1, 1]
        assert config.alerts.targets()[1] == "webhook:pager"
        assert config.alerts.targets()[0].startswith("webhook:url-")
        assert sorted(config.alerts.targets()) == sorted(reordered.alerts.targets())


def test_two_webhooks_under_one_name_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "routewatch.yaml"
    hooks = [{"url": "http://127.0.0.1:9/a", "name": "ops"}, {"url": "http://x/b", "name": "ops"}]
    path.write_text(yaml.safe_dump({"alerts": {"webhooks": hooks}}))

    with pytest.raises(ConfigError, match="more than one receiver is filed as ops"):
        load_config(path, {})


def test_deliveries_are_signed_and_carry_a_stable_id(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 2)

    report = Dispatcher(engine, config, env).deliver_due()

    assert report.delivered == 2
    outbox = {o["delivery_id"]: o for o in rows(db_url, "outbox")}
    assert len(hook.requests) == 2
    for r in hook.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["x-routewatch-signature"] == expected
        assert verify(r.body, r.headers["x-routewatch-signature"], SECRET)
        assert not verify(r.body + b" ", r.headers["x-routewatch-signature"], SECRET)
        assert r.headers["x-routewatch-event"] == "incident.opened"
        row = outbox[r.headers["x-routewatch-delivery"]]
        assert r.json() == row["payload"]
        assert row["status"] == "delivered"
    attempts = rows(db_url, "delivery_attempts")
    assert [a["status_code"] for a in attempts] == [200, 200]
    engine.dispose()


DRAIN = """
import os, sys
from routewatch.alerts.dispatch import Dispatcher
from routewatch.config import load_config
from routewatch.store.migrate import open_database
from pathlib import Path
config = load_config(Path(sys.argv[1]), dict(os.environ))
engine = open_database(config.database_url)
report = Dispatcher(engine, config, dict(os.environ)).drain(float(sys.argv[2]))
print(report.delivered, report.failed, report.backlog.pending)
"""


def drain_in_a_new_process(config: Path, wait_s: float) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", DRAIN, str(config), str(wait_s)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert SECRET not in done.stdout + done.stderr
    return [int(x) for x in done.stdout.split()]


def test_a_receiver_down_across_a_restart_gets_each_event_exactly_once(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    path = write_config(tmp_path, db_url, hook.url)
    config, engine = load(path, env)
    raise_events(engine, config, 3)
    hook.fail_next = 10**6

    delivered, failed, pending = drain_in_a_new_process(path, 2.0)

    assert (delivered, pending) == (0, 3)
    assert failed >= 6, "each event was retried with backoff while the receiver was down"
    hook.fail_next = 0

    delivered, failed, pending = drain_in_a_new_process(path, 2.0)

    assert (delivered, pending) == (3, 0)
    ids = [r.headers["x-routewatch-delivery"] for r in hook.delivered()]
    assert sorted(ids) == sorted(o["delivery_id"] for o in rows(db_url, "outbox"))
    codes = [a["status_code"] for a in rows(db_url, "delivery_attempts")]
    assert codes.count(200) == 3
    assert codes.count(503) == hook.refused
    engine.dispose()


def test_a_dispatcher_that_died_mid_delivery_loses_nothing(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    now = datetime.now(UTC)
    # A dispatcher claims the message and dies before sending it.
    assert len(claim_due(engine, now=now, lease_s=60)) == 1

    early = Dispatcher(engine, config, env, now=lambda: now + timedelta(seconds=30))
    assert early.deliver_due().delivered == 0, "the lease still holds"
    late = Dispatcher(engine, config, env, now=lambda: now + timedelta(seconds=61))
    assert late.deliver_due().delivered == 1
    assert late.deliver_due().delivered == 0

    assert len(hook.delivered()) == 1
    engine.dispose()


def test_two_dispatchers_at_once_deliver_each_message_once(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 30)
    dispatchers = [Dispatcher(engine, config, env) for _ in range(2)]
    threads = [threading.Thread(target=d.deliver_due) for d in dispatchers]

    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ids = [r.headers["x-routewatch-delivery"] for r in hook.delivered()]
    assert len(ids) == len(set(ids)) == 30
    engine.dispose()


def test_an_event_undelivered_past_give_up_is_marked_dead(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    hook.fail_next = 10**6
    later = datetime.now(UTC) + timedelta(hours=config.alerts.delivery.give_up_hours)

    report = Dispatcher(engine, config, env, now=lambda: later).deliver_due()

    assert (report.dead, report.delivered) == (1, 0)
    (row,) = rows(db_url, "outbox")
    assert row["status"] == "dead"
    assert "503" in row["last_error"]
    engine.dispose()


def test_a_failing_publisher_is_retried_and_alerted_once(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    blocker = tmp_path / "policy"
    blocker.write_text("a file where the folder should be")
    path = write_config(
        tmp_path,
        db_url,
        hook.url,
        providers={"p": {"base_url": "http://127.0.0.1:9/v1"}},
        routes={n: {"provider": "p", "model": f"m-{n}", "evals": ["faq"]} for n in ("a", "b")},
        policies={
            "chat": {"chain": ["a", "b"], "publish": [{"type": "json", "path": "policy/chat.json"}]}
        },
    )
    config, engine = load(path, env)
    with engine.begin() as conn:
        reconcile(
            conn,
            name="chat",
            policy=config.policies["chat"],
            alert_targets=config.alerts.targets(),
            now=datetime.now(UTC),
            actor="test",
        )
    clock = [datetime.now(UTC)]
    dispatcher = Dispatcher(engine, config, env, now=lambda: clock[0])

    for _ in range(5):
        dispatcher.deliver_due()
        clock[0] += timedelta(seconds=1)

    alerts = [r.json() for r in hook.delivered()]
    assert [a["event"] for a in alerts] == ["policy.publish_failed"]
    assert alerts[0]["policy"] == "chat"
    assert "policy/chat.json" in alerts[0]["publisher"]
    blocker.unlink()
    dispatcher.deliver_due()
    assert json.loads((tmp_path / "policy" / "chat.json").read_text())["chain"] == ["a", "b"]
    engine.dispose()


def test_editing_publishers_with_writes_pending_sends_none_to_the_wrong_file(
    tmp_path: Path, db_url: str, env: dict[str, str]
) -> None:
    def write(publish: list[dict[str, str]]) -> Path:
        return write_config(
            tmp_path,
            db_url,
            "http://127.0.0.1:9",
            providers={"p": {"base_url": "http://127.0.0.1:9/v1"}},
            routes={n: {"provider": "p", "model": f"m-{n}", "evals": ["faq"]} for n in "ab"},
            policies={"chat": {"chain": ["a", "b"], "publish": publish}},
        )

    kept = {"type": "openrouter", "path": "out/openrouter.json"}
    dropped = {"type": "json", "path": "out/chat.json"}
    config, engine = load(write([dropped, kept]), env)
    with engine.begin() as conn:
        reconcile(
            conn,
            name="chat",
            policy=config.policies["chat"],
            alert_targets=[],
            now=datetime.now(UTC),
            actor="test",
        )
    # The first publisher is removed while both writes are queued: the one left moves
    # to position 0, where the removed one's write must not land.
    edited = load_config(write([kept]), env)

    report = Dispatcher(engine, edited, env).deliver_due()
    engine.dispose()

    status = {r["target"]: r["status"] for r in rows(db_url, "outbox")}
    dropped_key, kept_key = (p.key for p in config.policies["chat"].publish)
    assert edited.policies["chat"].publish[0].key == kept_key
    assert status == {
        f"publish:chat:{kept_key}": "delivered",
        f"publish:chat:{dropped_key}": "pending",
    }
    assert report.delivered == 1
    assert not (tmp_path / "out" / "chat.json").exists()
    assert json.loads((tmp_path / "out" / "openrouter.json").read_text())["models"] == [
        "m-a",
        "m-b",
    ]


def test_one_publisher_listed_twice_is_a_config_error(tmp_path: Path) -> None:
    twice = [{"type": "json", "path": "chat.json"}, {"type": "json", "path": "chat.json"}]
    path = tmp_path / "routewatch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
                "routes": {"a": {"provider": "p", "model": "m", "evals": ["faq"]}},
                "policies": {"chat": {"chain": ["a"], "publish": twice}},
            }
        )
    )

    with pytest.raises(ConfigError, match="the same publisher is listed more than once"):
        load_config(path, {})


def test_secrets_never_reach_the_database_or_the_logs(
    tmp_path: Path,
    db_url: str,
    hook: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {"RW_TEST_SECRET": SECRET, "RW_SLACK_URL": f"{hook.url}/services/{SLACK_TOKEN}"}
    path = write_config(tmp_path, db_url, hook.url)
    data = yaml.safe_load(path.read_text())
    data["alerts"]["slack"] = {"webhook_url_env": "RW_SLACK_URL"}
    path.write_text(yaml.safe_dump(data))
    config, engine = load(path, env)
    raise_events(engine, config, 1)
    caplog.set_level(logging.DEBUG)
    hook.fail_next = 2

    first = Dispatcher(engine, config, env).deliver_due()
    second = Dispatcher(engine, config, env, now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    second.deliver_due()

    assert first.failed >= 1
    assert hook.refused == 2
    slack = [r for r in hook.delivered() if "XXXXslacktoken" in r.path]
    assert len(slack) == 1
    assert slack[0].json()["blocks"], "Slack got a Block Kit message"
    stored = json.dumps(
        [rows(db_url, t) for t in ("outbox", "delivery_attempts", "policy_versions")],
        default=str,
    )
    for secret in (SECRET, SLACK_TOKEN, "XXXXslacktoken"):
        assert secret not in stored
        assert secret not in caplog.text
        assert all(secret not in e for e in first.errors)
    engine.dispose()


def test_a_send_that_outlasts_the_lease_is_not_sent_again_by_another_dispatcher(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    """The lease is renewed while the send lasts: a receiver answering slowly got the
    same message from a second dispatcher, a duplicate page on Slack."""
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    hook.delay_s = 1.5
    slow = Dispatcher(engine, config, env)
    slow.lease_s = 1.0  # runs out before the receiver answers (renewed up to 2 s)
    sending = threading.Thread(target=slow.deliver_due)

    sending.start()
    other = Dispatcher(engine, config, env)
    try:
        while sending.is_alive():
            other.deliver_due()
    finally:
        sending.join()
        engine.dispose()

    assert len(hook.requests) == 1
    assert [r["status"] for r in rows(db_url, "outbox")] == ["delivered"]


def test_a_body_sent_byte_by_byte_does_not_hold_the_attempt_past_its_timeout(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    hook.status = 500
    hook.body = b"x" * 40
    hook.drip_s = 0.25  # 10 s for the whole body, against a timeout of 2 s

    started = time.monotonic()
    report = Dispatcher(engine, config, env).deliver_due()
    took = time.monotonic() - started

    assert report.failed == 1
    assert took < 6, took  # 10 s for the whole body
    (row,) = rows(db_url, "outbox")
    assert row["last_error"].startswith("HTTP 500: x")
    engine.dispose()


def test_a_retry_after_past_any_date_is_one_last_try_at_the_give_up_time(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    """`1e12` overflowed the date: the attempt went unrecorded, `run` crashed, and the
    message was sent again every lease, forever."""
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    hook.status = 429
    hook.answer_headers = {"Retry-After": "1e12"}

    report = Dispatcher(engine, config, env).deliver_due()
    engine.dispose()

    assert report.failed == 1
    (row,) = rows(db_url, "outbox")
    assert row["status"] == "pending"
    assert row["last_error"].startswith("HTTP 429")
    give_up = row["created_at"] + timedelta(hours=config.alerts.delivery.give_up_hours)
    assert abs(row["next_attempt_at"] - give_up) < timedelta(seconds=5)


@pytest.mark.parametrize("retry_after", ["120", "HTTP-DATE"])
def test_retry_after_on_a_429_is_honoured_over_a_shorter_backoff(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str], retry_after: str
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    now = datetime.now(UTC)
    if retry_after == "HTTP-DATE":
        retry_after = format_datetime(now + timedelta(seconds=121), usegmt=True)
    hook.status = 429
    hook.answer_headers = {"Retry-After": retry_after}

    Dispatcher(engine, config, env).deliver_due()

    (row,) = rows(db_url, "outbox")
    assert row["status"] == "pending"
    wait = (row["next_attempt_at"] - now).total_seconds()
    assert 115 <= wait <= 125, wait  # the backoff alone would be 0.05 s
    engine.dispose()


def test_a_receivers_answer_reaches_no_terminal_or_log_line_as_control_characters(
    tmp_path: Path, db_url: str, hook: Receiver, env: dict[str, str]
) -> None:
    config, engine = load(write_config(tmp_path, db_url, hook.url), env)
    raise_events(engine, config, 1)
    hook.status = 500
    hook.body = "\x1b]0;pwned-title\x07 oops\nFAKE LOG LINE \u202egnp.exe".encode()

    Dispatcher(engine, config, env).deliver_due()

    (row,) = rows(db_url, "outbox")
    error = row["last_error"]
    assert error.startswith("HTTP 500: ")
    assert "oops" in error
    assert error.isprintable(), repr(error)
    assert "\u202e" not in error
    engine.dispose()


def test_verify_says_false_for_a_missing_or_non_ascii_signature() -> None:
    body = b'{"event":"x"}'

    assert verify(body, None, SECRET) is False
    assert verify(body, "sha256=\u00e9", SECRET) is False
    assert verify(
        body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(), SECRET
    )


def test_a_hanging_receiver_does_not_hold_up_the_other_targets(
    tmp_path: Path, db_url: str, env: dict[str, str]
) -> None:
    """Its first timeout in a pass sets it aside for the pass: Slack's pages (here another
    webhook's) waited behind every message of a hanging webhook, timeout_s each."""
    with receiver() as slow, receiver() as fast:
        slow.delay_s = 3  # past the 2 s timeout
        path = write_config(tmp_path, db_url, slow.url)
        config_body = yaml.safe_load(path.read_text())
        config_body["alerts"]["webhooks"].append({"url": f"{fast.url}/hook", "name": "fast"})
        path.write_text(yaml.safe_dump(config_body))
        config, engine = load(path, env)
        raise_events(engine, config, 3)  # the slow one's messages first, then alternating

        # Room for the fast ones after one slow attempt (2 s), none for a second one.
        report = Dispatcher(engine, config, env).deliver_due(deadline=time.monotonic() + 3.9)

        assert len(fast.delivered()) == 3
        assert len(slow.requests) == 1, "tried once in the pass"
        assert (report.delivered, report.failed) == (3, 1)
        engine.dispose()


def test_a_status_line_sent_byte_by_byte_does_not_hold_a_webhook_past_its_timeout() -> None:
    """httpx's timeouts bound each read: a receiver dripping its answer reset them."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno":
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=drip)
    thread.start()
    started = time.monotonic()
    try:
        result = send_webhook(
            f"http://127.0.0.1:{port}/hook", event(0), delivery_id="d", secret=None, timeout_s=1
        )
    finally:
        took = time.monotonic() - started
        thread.join()
        server.close()

    assert (result.ok, result.error) == (False, "no answer within 1 s")
    assert took < 3, took  # about 7 s for the whole answer


def test_a_refused_connection_says_why() -> None:
    """httpx says only "All connection attempts failed"; the errno behind it says why."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = send_webhook(
        f"http://127.0.0.1:{port}/hook", event(0), delivery_id="d", secret=None, timeout_s=2
    )

    assert result.error is not None
    assert result.error.startswith("ConnectError: [Errno 111]"), result.error
