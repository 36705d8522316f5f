"""`routewatch policy show|pin|unpin|export` on a project on disk, SQLite and PostgreSQL.

No simulator: these commands never call a route. A local receiver stands in for the
webhook; the publishers write real files next to the config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update

from routewatch.alerts.slack_blocks import slack_message
from routewatch.alerts.webhook import verify
from routewatch.cli import run
from routewatch.config import load_config
from routewatch.store.migrate import current_revision, open_database
from routewatch.store.outbox import claim_due
from routewatch.store.policies import (
    publish_targets,
    reconcile,
    sync_publishers,
)
from routewatch.store.tables import IncidentRow
from runner_project import rows, write_project
from store_rows import add_run, open_incident

SECRET = "whsec-policy-test-7f3a9c"
SECRET_VAR = "RW_TEST_POLICY_HOOK_SECRET"
ROUTES = {name: {"model": f"model-{name}"} for name in ("a", "b", "c")}


@dataclass
class Hook:
    """What the webhook receiver got: lower-cased headers and the raw body per request."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    delay_s: float = 0.0

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def hook() -> Iterator[Hook]:
    record = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            record.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(record.delay_s)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def write_config(root: Path, database_url: str, hook_url: str) -> Path:
    path = write_project(root, "http://127.0.0.1:9", ROUTES, database_url=database_url)
    body = yaml.safe_load(path.read_text())
    body["policies"] = {
        "chat": {
            "chain": ["a", "b", "c"],
            "mode": "auto",
            "publish": [
                {"type": "json", "path": "policy/chat.json"},
                {"type": "openrouter", "path": "policy/or.json"},
            ],
        }
    }
    body["alerts"] = {"webhooks": [{"url": hook_url, "secret_env": SECRET_VAR}]}
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_VAR, SECRET)
    monkeypatch.delenv("ROUTEWATCH_DATABASE_URL", raising=False)


@pytest.fixture
def config(tmp_path: Path, db_url: str, hook: Hook) -> Path:
    """The project on SQLite and on PostgreSQL."""
    return write_config(tmp_path, db_url, hook.url)


@pytest.fixture
def sqlite_config(tmp_path: Path, hook: Hook) -> Path:
    """The project on SQLite only: input errors are refused before anything is written."""
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'rw.db'}", hook.url)


def policy(config: Path, command: str, *args: str) -> int:
    return run(["policy", command, "-c", str(config), *args])


def published(config: Path, name: str) -> Any:
    return json.loads((config.parent / "policy" / name).read_text())


def test_show_before_any_change_is_version_0_on_the_configured_chain(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert policy(config, "show") == 0

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "policy chat (auto mode), version 0",
        "  configured: a → b → c",
        "  active:     a → b → c",
        "  pinned:     no",
    ]
    # Showing writes nothing: not even the database, which no command has made yet.
    assert current_revision(db_url) is None


def test_pin_prints_the_version_and_publishes_both_files(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert policy(config, "pin", "chat", "b", "a") == 0

    out = capsys.readouterr()
    assert out.out == "policy chat: version 1, active chain b → a\n"
    assert "3 delivered" in out.err
    assert published(config, "chat.json")["chain"] == ["b", "a"]
    assert published(config, "chat.json")["version"] == 1
    assert published(config, "or.json") == {"models": ["model-b", "model-a"]}


def test_pinning_a_route_with_an_open_incident_warns(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = open_database(db_url)  # migrated, as the command's first step would
    at = datetime(2026, 11, 9, 6, tzinfo=UTC)
    add_run(engine, "b", at)
    incident = open_incident(engine, "b", at)
    engine.dispose()

    assert policy(config, "pin", "chat", "b", "a") == 0

    err = capsys.readouterr().err
    assert f"warning: b has open incident(s) (#{incident} score); the pin keeps it" in err
    assert "warning: a " not in err


def test_pinning_a_route_outside_the_policys_chain_warns(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Perhaps meant, perhaps a typo naming another policy's route: said either way."""
    body = yaml.safe_load(config.read_text())
    body["routes"]["d"] = {**body["routes"]["a"], "model": "model-d"}
    config.write_text(yaml.safe_dump(body))

    assert policy(config, "pin", "chat", "d", "a") == 0

    out = capsys.readouterr()
    assert out.out.startswith("policy chat: version 1, active chain d → a")
    assert out.err.splitlines()[-1] == (
        "warning: d is not in policy chat's configured chain (a → b → c); pinned all the same"
    )
    assert "warning: a " not in out.err


def test_a_latency_incident_gives_no_pin_warning(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Latency and cost incidents never take a route out of the chain."""
    engine = open_database(db_url)
    at = datetime(2026, 11, 9, 6, tzinfo=UTC)
    add_run(engine, "b", at)
    incident = open_incident(engine, "b", at)
    with engine.begin() as conn:
        conn.execute(
            update(IncidentRow).where(IncidentRow.id == incident).values(metric="p95_latency_ms")
        )
    engine.dispose()

    assert policy(config, "pin", "chat", "b", "a") == 0

    assert "warning" not in capsys.readouterr().err


def test_pin_sends_one_signed_policy_changed_event(config: Path, db_url: str, hook: Hook) -> None:
    assert policy(config, "pin", "chat", "b", "a") == 0

    [(headers, body)] = hook.requests
    [message] = [m for m in rows(db_url, "outbox") if m["target"].startswith("webhook:")]
    assert headers["x-routewatch-event"] == "policy.changed"
    assert headers["x-routewatch-delivery"] == message["delivery_id"]
    assert message["status"] == "delivered"
    header = headers["x-routewatch-signature"]
    assert verify(body, header, SECRET)
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    event = json.loads(body)
    assert event["event"] == "policy.changed"
    assert (event["policy"], event["version"], event["actor"]) == ("chat", 1, "cli")
    assert (event["chain"], event["previous_chain"]) == (["b", "a"], ["a", "b", "c"])
    assert event["pins"] == ["b", "a"]


def test_show_after_a_pin_prints_the_pins_and_the_history(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "show", "chat") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "policy chat (auto mode), version 1",
        "  configured: a → b → c",
        "  active:     b → a",
        "  pinned:     b → a",
    ]
    history = [line.split() for line in lines[4:]]
    assert history[0][:6] == ["version", "at", "(UTC)", "chain", "by", "incident"]
    assert [row[0] for row in history[1:]] == ["1"]
    assert "pinned by hand (cli) to b → a" in lines[-1]


def test_show_after_pin_and_unpin_lists_both_versions_newest_first(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    policy(config, "unpin", "chat")
    capsys.readouterr()

    assert policy(config, "show") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "policy chat (auto mode), version 2"
    assert lines[2:4] == ["  active:     a → b → c", "  pinned:     no"]
    versions = [line.split()[0] for line in lines[5:]]
    assert versions == ["2", "1"]
    assert "unpinned by hand (cli)" in lines[5]
    assert "pinned by hand (cli) to b → a" in lines[6]


def test_export_json_is_the_published_policy_file(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "export", "chat", "--format", "json") == 0

    exported = json.loads(capsys.readouterr().out)
    assert set(exported) == {"policy", "version", "updated_at", "chain", "demoted"}
    assert (exported["chain"], exported["demoted"]) == (["b", "a"], [])
    assert exported == published(config, "chat.json")


def test_export_before_any_change_is_the_configured_chain_at_version_0(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert policy(config, "export", "chat") == 0

    exported = json.loads(capsys.readouterr().out)
    assert (exported["version"], exported["chain"]) == (0, ["a", "b", "c"])


def test_export_litellm_is_a_router_settings_block_for_the_pinned_chain(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "export", "chat", "--format", "litellm") == 0

    assert yaml.safe_load(capsys.readouterr().out) == {
        "router_settings": {
            "fallbacks": [{"model-b": ["model-a"]}],
            "model_group_alias": {"chat": "model-b"},
        }
    }


def test_export_litellm_gives_no_alias_where_the_group_is_the_heads_own_name(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As the publisher writes the file: clients sending the head's name need no alias."""
    body = yaml.safe_load(config.read_text())
    (config.parent / "litellm.yaml").write_text("model_list: []\n")
    body["policies"]["chat"]["publish"] = [
        {"type": "litellm", "path": "litellm.yaml", "group": "model-b"}
    ]
    config.write_text(yaml.safe_dump(body))
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "export", "chat", "--format", "litellm") == 0

    exported = yaml.safe_load(capsys.readouterr().out)
    assert exported == {"router_settings": {"fallbacks": [{"model-b": ["model-a"]}]}}
    written = yaml.safe_load((config.parent / "litellm.yaml").read_text())
    assert written["router_settings"]["fallbacks"] == exported["router_settings"]["fallbacks"]
    assert not written["router_settings"]["model_group_alias"]


def test_unpin_returns_to_the_configured_chain_and_republishes(
    config: Path, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "unpin", "chat") == 0

    assert capsys.readouterr().out == "policy chat: version 2, active chain a → b → c\n"
    assert published(config, "chat.json")["chain"] == ["a", "b", "c"]
    assert published(config, "chat.json")["version"] == 2
    assert published(config, "or.json") == {"models": ["model-a", "model-b", "model-c"]}
    event = hook.events()[-1]
    assert (event["version"], event["pins"]) == (2, None)
    assert (event["chain"], event["previous_chain"]) == (["a", "b", "c"], ["b", "a"])


def test_a_second_unpin_changes_nothing_and_sends_nothing(
    config: Path, db_url: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    policy(config, "unpin", "chat")
    outbox = len(rows(db_url, "outbox"))
    capsys.readouterr()

    assert policy(config, "unpin", "chat") == 0

    out = capsys.readouterr()
    assert out.out == "policy chat: nothing changed; active chain a → b → c\n"
    assert out.err == ""
    assert len(hook.requests) == 2
    assert len(rows(db_url, "outbox")) == outbox
    assert [v["version"] for v in rows(db_url, "policy_versions")] == [1, 2]


def test_pinning_the_same_chain_again_changes_nothing(
    config: Path, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert policy(config, "pin", "chat", "b", "a") == 0

    assert capsys.readouterr().out == "policy chat: nothing changed; active chain b → a\n"
    assert len(hook.requests) == 1


def test_a_change_that_keeps_the_active_chain_says_so(
    config: Path, db_url: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every route degraded, the least bad kept; it recovers: a new version, same chain.
    The event said "chain changed" and Slack "changed its active chain"."""
    engine = open_database(db_url)
    at = datetime(2026, 11, 9, 6, tzinfo=UTC)
    incidents = {}
    for route in ("a", "b", "c"):
        add_run(engine, route, at)
        incidents[route] = open_incident(engine, route, at)
    loaded = load_config(config, {SECRET_VAR: SECRET})
    with engine.begin() as conn:
        first = reconcile(
            conn,
            name="chat",
            policy=loaded.policies["chat"],
            alert_targets=[],
            now=at,
            actor="routewatch",
        )
    engine.dispose()
    assert (first.decision.chain, first.decision.all_degraded) == (("a",), True)

    assert run(["incidents", "resolve", "-c", str(config), str(incidents["a"])]) == 0

    [changed] = [e for e in hook.events() if e["event"] == "policy.changed"]
    assert changed["chain"] == changed["previous_chain"] == ["a"]
    assert (
        changed["reason"] == "a recovered: not every route is degraded now; active chain unchanged"
    )
    title = slack_message(changed)["text"]
    assert "kept its active chain" in title, title


def set_publishers(config: Path, publish: list[dict[str, str]]) -> None:
    """Replace policy chat's publishers; deliveries are not waited for past a second."""
    body = yaml.safe_load(config.read_text())
    body["policies"]["chat"]["publish"] = publish
    body["alerts"]["delivery"] = {"run_wait_s": 1}
    config.write_text(yaml.safe_dump(body))


def publishes(url: str) -> list[tuple[str, int, str, str | None]]:
    """Each publish message: target, version, status, last error."""
    return [
        (m["target"], m["payload"]["version"], m["status"], m["last_error"])
        for m in rows(url, "outbox")
        if m["event"] == "policy.publish"
    ]


def test_a_pin_a_publisher_cannot_write_exits_2_and_pinning_again_writes_it(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = config.parent / "blocked"
    blocker.write_text("a file where the publisher's folder should be")
    set_publishers(config, [{"type": "json", "path": "blocked/chat.json"}])

    assert policy(config, "pin", "chat", "b", "a") == 2

    out = capsys.readouterr()
    assert out.out == "policy chat: version 1, active chain b → a\n"
    label = f"json {config.parent / 'blocked' / 'chat.json'}"
    [error] = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: policy chat: {label} does not have the active chain yet (")
    assert error.endswith(
        "); the change is stored, and the daemon or the next `routewatch run` tries again"
    )
    assert [v["version"] for v in rows(db_url, "policy_versions")] == [1]

    # Fixed: the same pin changes nothing, but tries the publisher again at once (its
    # backoff would have it wait 15-30 s) and succeeds.
    blocker.unlink()
    assert policy(config, "pin", "chat", "b", "a") == 0

    out = capsys.readouterr()
    assert out.out == "policy chat: nothing changed; active chain b → a\n"
    assert "error" not in out.err
    written = json.loads((config.parent / "blocked" / "chat.json").read_text())
    assert (written["version"], written["chain"]) == (1, ["b", "a"])
    [(_, version, status, _)] = publishes(db_url)
    assert (version, status) == (1, "delivered")


def test_a_slow_alert_receiver_does_not_keep_the_publishers_from_being_written(
    config: Path, db_url: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy.changed alert is queued first; its receiver used up run_wait_s, and the
    pin exited 2 blaming publishers that were never tried."""
    body = yaml.safe_load(config.read_text())
    body["alerts"]["delivery"] = {"run_wait_s": 1}
    config.write_text(yaml.safe_dump(body))
    hook.delay_s = 2

    assert policy(config, "pin", "chat", "b", "a") == 0

    assert "error" not in capsys.readouterr().err
    assert published(config, "chat.json")["chain"] == ["b", "a"]
    assert published(config, "or.json") == {"models": ["model-b", "model-a"]}


def test_a_publisher_whose_path_changed_gets_the_stored_chain_and_the_old_one_is_given_up(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (config.parent / "blocked").write_text("a file where the publisher's folder should be")
    set_publishers(config, [{"type": "json", "path": "blocked/chat.json"}])
    assert policy(config, "pin", "chat", "b", "a") == 2
    [(old_target, _, status, _)] = publishes(db_url)
    assert status == "pending"

    # The operator points the publisher elsewhere: the pending message can never be
    # delivered (before, it failed for 72 hours and raised a publish_failed alert), and
    # the new file would have waited for the policy's next change.
    set_publishers(config, [{"type": "json", "path": "policy/moved.json"}])
    capsys.readouterr()
    assert policy(config, "unpin", "chat") == 0

    assert capsys.readouterr().out == "policy chat: version 2, active chain a → b → c\n"
    written = json.loads((config.parent / "policy" / "moved.json").read_text())
    assert (written["version"], written["chain"]) == (2, ["a", "b", "c"])
    found = publishes(db_url)
    assert (old_target, 1, "dead") == found[0][:3]
    assert (found[0][3] or "").startswith("superseded: ")
    assert [(v, s) for t, v, s, _ in found if t != old_target] == [
        (1, "delivered"),
        (2, "delivered"),
    ]
    # Nobody is told a file nobody uses failed.
    assert not [m for m in rows(db_url, "outbox") if m["event"] == "policy.publish_failed"]


def test_a_publisher_moved_away_and_back_is_queued_again_by_the_sync(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its message was given up as superseded when it moved away: the newest message to
    its target is not a delivery, so `run` and the daemon must queue one."""
    (config.parent / "blocked").write_text("a file where the publisher's folder should be")
    set_publishers(config, [{"type": "json", "path": "blocked/chat.json"}])
    assert policy(config, "pin", "chat", "b", "a") == 2
    set_publishers(config, [{"type": "json", "path": "policy/moved.json"}])
    assert policy(config, "pin", "chat", "b", "a") == 0  # no new version; the sync ran
    (config.parent / "blocked").unlink()
    set_publishers(config, [{"type": "json", "path": "blocked/chat.json"}])
    loaded = load_config(config, {SECRET_VAR: SECRET})
    engine = open_database(db_url)
    try:
        done = sync_publishers(engine, loaded.policies, datetime.now(UTC))
    finally:
        engine.dispose()

    assert done.queued == tuple(publish_targets("chat", loaded.policies["chat"]))
    assert [(v, s) for t, v, s, _ in publishes(db_url) if t in done.queued][-1] == (1, "pending")


def test_a_pin_writes_a_publisher_another_dispatcher_holds_once_its_folder_is_fixed(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lease and a backoff look alike in the outbox, and an attempt that was never
    recorded (a kill mid-send) would make a message look held for good: a change by hand
    publishes at once, which at worst writes the newest version twice."""
    (config.parent / "blocked").write_text("a file where the publisher's folder should be")
    set_publishers(config, [{"type": "json", "path": "blocked/chat.json"}])
    assert policy(config, "pin", "chat", "b", "a") == 2
    (config.parent / "blocked").unlink()
    engine = open_database(db_url)
    try:
        later = datetime.now(UTC) + timedelta(hours=1)  # past its backoff
        assert len(claim_due(engine, now=later, lease_s=60)) == 1  # the daemon holds it
    finally:
        engine.dispose()
    capsys.readouterr()

    assert policy(config, "pin", "chat", "b", "a") == 0

    assert "error" not in capsys.readouterr().err
    written = json.loads((config.parent / "blocked" / "chat.json").read_text())
    assert (written["version"], written["chain"]) == (1, ["b", "a"])


def test_a_publisher_added_gets_the_stored_chain_at_the_next_command(
    config: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert policy(config, "pin", "chat", "b", "a") == 0
    body = yaml.safe_load(config.read_text())
    body["policies"]["chat"]["publish"].append({"type": "json", "path": "policy/added.json"})
    config.write_text(yaml.safe_dump(body))
    before = len(publishes(db_url))
    capsys.readouterr()

    assert policy(config, "pin", "chat", "b", "a") == 0

    assert capsys.readouterr().out == "policy chat: nothing changed; active chain b → a\n"
    written = json.loads((config.parent / "policy" / "added.json").read_text())
    assert (written["version"], written["chain"]) == (1, ["b", "a"])
    # Only the new publisher got a message; the others already had version 1.
    assert len(publishes(db_url)) == before + 1
    assert {s for _, _, s, _ in publishes(db_url)} == {"delivered"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "unknown policy 'nope'; known: chat"),
        (["pin", "nope", "a"], "unknown policy 'nope'; known: chat"),
        (["unpin", "nope"], "unknown policy 'nope'; known: chat"),
        (["export", "nope"], "unknown policy 'nope'; known: chat"),
        (["pin", "chat", "a", "x", "y"], "unknown route(s) x, y; known: a, b, c"),
        (["pin", "chat", "b", "a", "b"], "b appears twice in the pinned chain"),
        (["pin", "chat"], "Missing argument 'ROUTE...'"),
        (["export", "chat", "--format", "yaml"], "'yaml' is not one of"),
    ],
    ids=[
        "show-policy",
        "pin-policy",
        "unpin-policy",
        "export-policy",
        "route",
        "repeat",
        "no-route",
        "format",
    ],
)
def test_bad_input_exits_1_naming_the_problem_and_changes_nothing(
    sqlite_config: Path,
    hook: Hook,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert policy(sqlite_config, *args) == 1

    out = capsys.readouterr()
    assert message in out.err
    assert out.out == ""
    assert hook.requests == []
    assert not (sqlite_config.parent / "policy").exists()


def test_no_secret_reaches_the_output_or_the_database(
    config: Path, db_url: str, hook: Hook, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = (["pin", "chat", "c"], ["pin", "chat", "zz"], ["show"], ["unpin", "chat"])

    codes = [policy(config, *args) for args in commands]

    out = capsys.readouterr()
    tables = [rows(db_url, t) for t in ("outbox", "delivery_attempts", "policy_versions")]
    assert codes == [0, 1, 0, 0]
    assert all(tables)
    assert [v["version"] for v in tables[2]] == [1, 2]
    assert len(hook.requests) == 2
    assert SECRET not in out.out + out.err
    assert SECRET not in json.dumps(tables, default=str)


def test_status_json_shows_the_pinned_chain(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy(config, "pin", "chat", "b", "a")
    capsys.readouterr()

    assert run(["status", "-c", str(config), "--json"]) == 0

    assert json.loads(capsys.readouterr().out)["policies"] == [
        {
            "name": "chat",
            "mode": "auto",
            "configured_chain": ["a", "b", "c"],
            "active_chain": ["b", "a"],
            "version": 1,
            "pins": ["b", "a"],
        }
    ]
    assert run(["status", "-c", str(config)]) == 0
    assert "b → a (pinned)" in capsys.readouterr().out
    policy(config, "unpin", "chat")
    capsys.readouterr()
    assert run(["status", "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"][0]["pins"] is None


def test_concurrent_pins_each_get_their_own_version(config: Path, db_url: str) -> None:
    from routewatch.config import load_config
    from routewatch.policy import manage
    from routewatch.store.migrate import open_database

    loaded = load_config(config, {"RW_TEST_POLICY_SECRET": "x"})
    engine = open_database(loaded.database_url)
    chains = [["a", "b"], ["b", "a"], ["c", "a"], ["a", "c"], ["b", "c"], ["c", "b"]]
    errors: list[BaseException] = []

    def pin(chain: list[str]) -> None:
        try:
            manage.pin(engine, loaded, "chat", chain)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pin, args=(c,)) for c in chains]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()

    assert errors == []
    versions = sorted(v["version"] for v in rows(db_url, "policy_versions"))
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 2
