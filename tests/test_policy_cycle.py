"""Fallback policies end to end: a simulated degradation moves traffic, recovery restores it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine, event

from receivers import Receiver, receiver
from routewatch.alerts.webhook import verify
from routewatch.cli import run
from routewatch.config import load_config
from routewatch.store.incidents import resolve_by_hand
from routewatch.store.migrate import open_database
from runner_project import faq_simulator, rows, write_project

SECRET = "policy-hook-secret-value"
ROUTES = {"cheap": "cheap-m", "mid": "mid-m", "premium": "premium-m"}
LITELLM = """\
# The team's LiteLLM proxy config: routewatch must keep all of this.
model_list:
  - model_name: cheap-m
    litellm_params: {model: openai/cheap, api_key: os.environ/OPENAI_API_KEY}
  - model_name: mid-m
    litellm_params: {model: openai/mid, api_key: os.environ/OPENAI_API_KEY}
  - model_name: premium-m
    litellm_params: {model: openai/premium, api_key: os.environ/OPENAI_API_KEY}
  - model_name: embed
    litellm_params: {model: openai/text-embedding-3-small}
litellm_settings:
  num_retries: 2  # keep low: routewatch watches quality
general_settings: {master_key: os.environ/LITELLM_MASTER_KEY}
router_settings:
  routing_strategy: simple-shuffle
  fallbacks: [{"embed": ["embed"]}]
"""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "sim"
    folder.mkdir()
    with faq_simulator(folder) as url:
        for model in ROUTES.values():
            set_quality(url, model, 1.0)
        yield url


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("RW_POLICY_HOOK_SECRET", SECRET)
    with receiver() as r:
        yield r


def set_quality(sim: str, model: str, quality: float) -> None:
    httpx.patch(f"{sim}/admin/models/{model}", json={"quality": quality}).raise_for_status()


def project(tmp_path: Path, sim: str, hook: Receiver, mode: str, db_url: str) -> Path:
    path = write_project(
        tmp_path, sim, {name: {"model": m} for name, m in ROUTES.items()}, database_url=db_url
    )
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "litellm.yaml").write_text(LITELLM)
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    config["alerts"] = {
        "webhooks": [{"url": f"{hook.url}/hook", "secret_env": "RW_POLICY_HOOK_SECRET"}],
        "delivery": {"backoff_initial_s": 0.05, "run_wait_s": 2},
    }
    config["policies"] = {
        "chat": {
            "chain": list(ROUTES),
            "mode": mode,
            "publish": [
                {"type": "json", "path": "policy/chat.json"},
                {"type": "litellm", "path": "gateway/litellm.yaml"},
            ],
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


def day(config: Path, n: int) -> int:
    return run(["run", "-c", str(config), "--at", f"2026-11-{n:02d}T06:00:00Z"])


def events(hook: Receiver) -> list[dict[str, Any]]:
    for r in hook.delivered():
        assert verify(r.body, r.headers["x-routewatch-signature"], SECRET)
    return [r.json() for r in hook.delivered()]


def policy_file(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "policy" / "chat.json").read_text())
    return data


def litellm(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((tmp_path / "gateway" / "litellm.yaml").read_text())
    return data


def fallbacks_of_chat(config: dict[str, Any]) -> list[dict[str, list[str]]]:
    return [f for f in config["router_settings"]["fallbacks"] if "embed" not in f]


def test_auto_mode_demotes_a_degraded_route_and_restores_it_after_recovery(
    tmp_path: Path,
    sim: str,
    hook: Receiver,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = project(tmp_path, sim, hook, "auto", db_url)
    for n in range(1, 7):
        assert day(config, n) == 0
    assert policy_file(tmp_path)["chain"] == list(ROUTES)
    assert events(hook) == [], "a healthy history pages nobody"
    set_quality(sim, "cheap-m", 0.0)
    capsys.readouterr()

    day(config, 7)

    err = capsys.readouterr().err
    assert "policy chat: demoted cheap; active chain mid → premium" in err
    demoted = policy_file(tmp_path)
    assert demoted["chain"] == ["mid", "premium"]
    assert [d["route"] for d in demoted["demoted"]] == ["cheap"]
    (incident,) = rows(db_url, "incidents")
    assert demoted["demoted"][0]["incident_id"] == incident["id"]
    gateway = litellm(tmp_path)
    assert fallbacks_of_chat(gateway) == [{"mid-m": ["premium-m"]}]
    assert gateway["router_settings"]["model_group_alias"] == {"chat": "mid-m"}
    assert gateway["litellm_settings"] == {"num_retries": 2}
    assert gateway["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    assert {"embed": ["embed"]} in gateway["router_settings"]["fallbacks"]
    text = (tmp_path / "gateway" / "litellm.yaml").read_text()
    assert "# keep low: routewatch watches quality" in text
    assert [m["model_name"] for m in gateway["model_list"]] == [
        "mid-m",
        "premium-m",
        "cheap-m",
        "embed",
    ]
    sent = events(hook)
    assert [e["event"] for e in sent] == ["incident.opened", "policy.changed"]
    opened, changed = sent
    assert opened["route"] == "cheap"
    assert opened["policy_actions"][0]["action"] == "demoted cheap; active chain mid → premium"
    assert opened["worst_items"][0]["input"], "evidence: the item's input travels with the alert"
    assert changed["chain"] == ["mid", "premium"]
    assert changed["previous_chain"] == list(ROUTES)
    assert changed["incident_id"] == incident["id"]
    set_quality(sim, "cheap-m", 1.0)

    for n in (8, 9, 10):
        day(config, n)

    assert policy_file(tmp_path)["chain"] == list(ROUTES)
    assert policy_file(tmp_path)["demoted"] == []
    gateway = litellm(tmp_path)
    assert fallbacks_of_chat(gateway) == [{"cheap-m": ["mid-m", "premium-m"]}]
    assert [m["model_name"] for m in gateway["model_list"]] == [*ROUTES.values(), "embed"]
    later = events(hook)[2:]
    assert [e["event"] for e in later] == ["incident.resolved", "policy.changed"]
    assert (later[0]["resolved_by"], later[0]["reason"]) == (
        "routewatch",
        "3 healthy run(s) in a row",
    )
    assert later[1]["chain"] == list(ROUTES)
    versions = rows(db_url, "policy_versions")
    assert [(v["version"], v["actor"]) for v in versions] == [
        (1, "routewatch"),
        (2, "routewatch"),
        (3, "routewatch"),
    ]
    capsys.readouterr()
    assert run(["status", "-c", str(config), "--json"]) == 0
    (policy,) = json.loads(capsys.readouterr().out)["policies"]
    assert (policy["active_chain"], policy["version"]) == (list(ROUTES), 3)


def test_suggest_mode_alerts_and_changes_nothing(
    tmp_path: Path, sim: str, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, sim, hook, "suggest", f"sqlite:///{tmp_path / 'rw.db'}")
    for n in range(1, 7):
        day(config, n)
    before_file = (tmp_path / "policy" / "chat.json").read_text()
    before_gateway = (tmp_path / "gateway" / "litellm.yaml").read_text()
    set_quality(sim, "cheap-m", 0.0)
    capsys.readouterr()

    day(config, 7)

    assert "policy chat: suggest mode, nothing changed: would have demoted cheap" in (
        capsys.readouterr().err
    )
    (opened,) = events(hook)
    assert opened["event"] == "incident.opened"
    assert opened["policy_actions"][0]["mode"] == "suggest"
    assert (tmp_path / "policy" / "chat.json").read_text() == before_file
    assert (tmp_path / "gateway" / "litellm.yaml").read_text() == before_gateway
    assert len(rows(f"sqlite:///{tmp_path / 'rw.db'}", "policy_versions")) == 1


def test_when_every_route_degrades_the_least_bad_one_stays_and_the_event_is_critical(
    tmp_path: Path, sim: str, hook: Receiver
) -> None:
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, hook, "auto", db)
    for n in range(1, 7):
        day(config, n)
    for model, quality in (("cheap-m", 0.0), ("mid-m", 0.4), ("premium-m", 0.0)):
        set_quality(sim, model, quality)

    day(config, 7)

    assert policy_file(tmp_path)["chain"] == ["mid"]
    changed = [e for e in events(hook) if e["event"] == "policy.changed"]
    assert changed[-1]["all_degraded"] is True
    assert changed[-1]["severity"] == "critical"
    assert changed[-1]["chain"] == ["mid"]


def test_a_long_incident_reminds_every_renotify_hours_and_never_on_each_bad_run(
    tmp_path: Path, sim: str, hook: Receiver
) -> None:
    config = project(tmp_path, sim, hook, "auto", f"sqlite:///{tmp_path / 'rw.db'}")
    data = yaml.safe_load(config.read_text())
    data["alerts"]["renotify_hours"] = 48
    config.write_text(yaml.safe_dump(data))
    for n in range(1, 7):
        day(config, n)
    set_quality(sim, "cheap-m", 0.0)

    for n in range(7, 12):
        day(config, n)

    incident_events = [
        (e["event"], e["at"][:10], e["metric"])
        for e in events(hook)
        if e["event"].startswith("incident.") and e["metric"] == "score"
    ]
    assert incident_events == [
        ("incident.opened", "2026-11-07", "score"),
        ("incident.reminder", "2026-11-09", "score"),
        ("incident.reminder", "2026-11-11", "score"),
    ]


def cheap_degraded_on_day_7(
    tmp_path: Path, sim: str, hook: Receiver, db: str
) -> tuple[Path, dict[str, Any]]:
    """An auto-mode project: six healthy days, then cheap's model fails every item on day 7
    and its score incident opens (cheap demoted). Returns the config and the incident."""
    config = project(tmp_path, sim, hook, "auto", db)
    for n in range(1, 7):
        day(config, n)
    set_quality(sim, "cheap-m", 0.0)
    day(config, 7)
    (incident,) = rows(db, "incidents")
    return config, incident


def test_an_incident_resolved_by_hand_restores_the_route_and_a_still_bad_run_pages_again(
    tmp_path: Path, sim: str, hook: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config, incident = cheap_degraded_on_day_7(tmp_path, sim, hook, db)
    assert policy_file(tmp_path)["chain"] == ["mid", "premium"]
    capsys.readouterr()

    code = run(
        ["incidents", "resolve", "-c", str(config), str(incident["id"]), "--reason", "on purpose"]
    )

    assert code == 0
    out = capsys.readouterr().out
    assert f"incident #{incident['id']} (cheap · support-faq · score) resolved by hand" in out
    assert "policy chat: restored cheap; active chain cheap → mid → premium" in out
    assert policy_file(tmp_path)["chain"] == list(ROUTES)
    assert fallbacks_of_chat(litellm(tmp_path)) == [{"cheap-m": ["mid-m", "premium-m"]}]
    resolved, changed = events(hook)[2:]
    assert (resolved["event"], resolved["resolved_by"]) == ("incident.resolved", "cli")
    assert resolved["policy_actions"][0]["changed"] is True
    assert (changed["event"], changed["actor"]) == ("policy.changed", "cli")
    assert changed["reason"] == "restored cheap"
    assert changed["incident_id"] == incident["id"]

    day(config, 8)  # cheap is as bad as before: resolving is not silencing

    first, *later = rows(db, "incidents")
    assert first["status"] == "resolved"
    assert {(i["metric"], i["status"]) for i in later} >= {("score", "open")}
    assert policy_file(tmp_path)["chain"] == ["mid", "premium"]
    assert {e["event"] for e in events(hook)[4:]} == {"incident.opened", "policy.changed"}


@contextmanager
def resolved_by_hand_during_detection(
    config: Path, db: str, route: str, incident: int
) -> Iterator[None]:
    """Resolve ``incident`` by hand, from another connection, just as a run of ``route``
    starts writing its detection: after the run read the open incidents, before it writes."""
    other = open_database(db)
    fired: list[bool] = []

    def race(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if (
            not fired
            and statement.startswith("INSERT INTO detections")
            and route in str(parameters)
        ):
            fired.append(True)
            resolve_by_hand(other, load_config(config, {}), incident, actor="cli")

    event.listen(Engine, "before_cursor_execute", race)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", race)
        other.dispose()
    assert fired, "the race was run"


def test_a_bad_run_racing_a_resolution_by_hand_opens_a_new_incident(
    tmp_path: Path, sim: str, hook: Receiver, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, incident = cheap_degraded_on_day_7(tmp_path, sim, hook, db_url)

    with resolved_by_hand_during_detection(config, db_url, "cheap", incident["id"]):
        day(config, 8)  # still bad

    first, *later = rows(db_url, "incidents")
    assert (first["status"], first["last_run_id"]) == ("resolved", incident["last_run_id"])
    assert ("score", "open") in {(i["metric"], i["status"]) for i in later}, "paged again"
    assert policy_file(tmp_path)["chain"] == ["mid", "premium"]


def test_a_healthy_run_racing_a_resolution_by_hand_does_not_resolve_it_again(
    tmp_path: Path, sim: str, hook: Receiver, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, incident = cheap_degraded_on_day_7(tmp_path, sim, hook, db_url)
    set_quality(sim, "cheap-m", 1.0)
    day(config, 8)
    day(config, 9)
    capsys.readouterr()

    with resolved_by_hand_during_detection(config, db_url, "cheap", incident["id"]):
        day(config, 10)  # the third healthy run would have resolved it

    assert "resolved incident" not in capsys.readouterr().err
    resolved = [e for e in events(hook) if e["event"] == "incident.resolved"]
    assert [e["resolved_by"] for e in resolved] == ["cli"]
    (stored,) = rows(db_url, "incidents")
    assert stored["healthy_streak"] == 2, "as the hand left it"


def test_resolving_the_incident_of_a_route_taken_out_of_the_chain_updates_the_policy(
    tmp_path: Path, sim: str, hook: Receiver
) -> None:
    """Its policy file still listed it as demoted for that incident until the next run."""
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config, incident = cheap_degraded_on_day_7(tmp_path, sim, hook, db)
    assert [d["route"] for d in policy_file(tmp_path)["demoted"]] == ["cheap"]
    data = yaml.safe_load(config.read_text())
    del data["routes"]["cheap"]
    data["policies"]["chat"]["chain"] = ["mid", "premium"]
    config.write_text(yaml.safe_dump(data))

    assert run(["incidents", "resolve", "-c", str(config), str(incident["id"])]) == 0

    published = policy_file(tmp_path)
    assert (published["chain"], published["demoted"]) == (["mid", "premium"], [])
    changed = [e for e in events(hook) if e["event"] == "policy.changed"][-1]
    assert (changed["reason"], changed["incident_id"], changed["actor"]) == (
        "cheap is no longer in the configured chain",
        None,
        "cli",
    )


def test_a_publisher_moved_between_runs_gets_the_stored_chain_at_the_next_run(
    tmp_path: Path, sim: str, hook: Receiver
) -> None:
    """The chain stays the same, so no new version: the next run still writes the new file."""
    db_url = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, hook, "auto", db_url)
    assert day(config, 2) == 0
    assert policy_file(tmp_path)["version"] == 1
    data = yaml.safe_load(config.read_text())
    data["policies"]["chat"]["publish"][0]["path"] = "policy/moved.json"
    config.write_text(yaml.safe_dump(data))

    assert day(config, 3) == 0

    moved = json.loads((tmp_path / "policy" / "moved.json").read_text())
    assert (moved["version"], moved["chain"]) == (1, list(ROUTES))
    assert [v["version"] for v in rows(db_url, "policy_versions")] == [1]
