"""A run whose judge is suspect never moves traffic; the judge's drift is announced once.

Days 1-6 are healthy. On day 7 the judge goes bad (its canary verdict moves, so every run
is ``judge_suspect``) while the cheap route fails every call: an ``error_rate`` incident
opens on a suspect run, and the policy must not act on it. In one variant day 8 is
suspect again (no second ``judge.drift``, still no move); the first day the judge is back,
the policy demotes cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from receivers import Receiver, receiver
from routewatch.alerts.webhook import verify
from routewatch.cli import run
from runner_project import faq_simulator, rows, write_project

SECRET = "judge-suspect-hook-secret"
ROUTES = {"cheap": "js-cheap", "mid": "js-mid", "premium": "js-premium"}
EVAL_SET = "support-faq"
JUDGE = "judge"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "sim"
    folder.mkdir()
    with faq_simulator(folder) as url:
        for model in (*ROUTES.values(), JUDGE):
            patch(url, model, {"quality": 1.0})
        yield url


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("RW_JUDGE_SUSPECT_SECRET", SECRET)
    with receiver() as r:
        yield r


def patch(sim: str, model: str, fields: dict[str, Any]) -> None:
    httpx.patch(f"{sim}/admin/models/{model}", json=fields).raise_for_status()


def project(
    tmp_path: Path, sim: str, hook: Receiver, db: str, judge: dict[str, Any] | None = None
) -> Path:
    path = write_project(
        tmp_path,
        sim,
        {name: {"model": m} for name, m in ROUTES.items()},
        database_url=db,
        provider={"max_retries": 0},
        judge=judge,
    )
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    config["alerts"] = {
        "webhooks": [{"url": f"{hook.url}/hook", "secret_env": "RW_JUDGE_SUSPECT_SECRET"}],
        "delivery": {"backoff_initial_s": 0.05, "run_wait_s": 2},
    }
    config["policies"] = {
        "chat": {
            "chain": list(ROUTES),
            "mode": "auto",
            "publish": [{"type": "json", "path": "policy/chat.json"}],
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


def day(config: Path, n: int) -> int:
    return run(["run", "-c", str(config), "--at", f"2026-11-{n:02d}T06:00:00Z"])


def events(hook: Receiver) -> list[dict[str, Any]]:
    delivered = hook.delivered()
    for r in delivered:
        assert verify(r.body, r.headers["x-routewatch-signature"], SECRET)
    return [r.json() for r in delivered]


def named(hook: Receiver, event: str) -> list[dict[str, Any]]:
    return [e for e in events(hook) if e["event"] == event]


def chain_on_disk(tmp_path: Path) -> list[str]:
    data: dict[str, Any] = json.loads((tmp_path / "policy" / "chat.json").read_text())
    chain: list[str] = data["chain"]
    return chain


def runs_on(db: str, n: int) -> dict[str, dict[str, Any]]:
    """Day ``n``'s run of each route, by route."""
    return {r["route"]: r for r in rows(db, "runs") if r["at"].day == n}


@pytest.mark.parametrize("suspect_days", [1, 2], ids=["one-suspect-day", "two-suspect-days"])
def test_a_judge_suspect_run_never_moves_traffic_and_drift_is_raised_once(
    tmp_path: Path,
    sim: str,
    hook: Receiver,
    capsys: pytest.CaptureFixture[str],
    suspect_days: int,
) -> None:
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, hook, db)
    for n in range(1, 7):
        assert day(config, n) == 0
    assert not any(r["judge_suspect"] for r in rows(db, "runs"))
    assert chain_on_disk(tmp_path) == list(ROUTES)
    assert events(hook) == [], "a healthy history pages nobody"
    assert [v["version"] for v in rows(db, "policy_versions")] == [1]

    # Day 7: the judge drifts and cheap fails every call.
    patch(sim, JUDGE, {"quality": 0.0})
    patch(sim, ROUTES["cheap"], {"faults": {"server_error": 1.0}})
    capsys.readouterr()
    day(config, 7)

    assert "judge suspect" in capsys.readouterr().err
    seventh = runs_on(db, 7)
    assert set(seventh) == set(ROUTES)
    assert all(r["judge_suspect"] for r in seventh.values())
    assert seventh["cheap"]["errors_total"] == seventh["cheap"]["results_total"] > 0
    (incident,) = rows(db, "incidents")
    assert (incident["route"], incident["metric"], incident["status"]) == (
        "cheap",
        "error_rate",
        "open",
    )
    assert incident["opening_run_id"] == seventh["cheap"]["id"]
    assert [v["version"] for v in rows(db, "policy_versions")] == [1], "no new policy version"
    assert chain_on_disk(tmp_path) == list(ROUTES), "traffic did not move"
    assert named(hook, "policy.changed") == []
    (opened,) = named(hook, "incident.opened")
    assert (opened["route"], opened["metric"]) == ("cheap", "error_rate")
    assert opened["policy_actions"] == [], "a suspect run does not even consult the policy"
    drifts = named(hook, "judge.drift")
    assert sorted((d["route"], d["eval_set"]) for d in drifts) == [
        (route, EVAL_SET) for route in sorted(ROUTES)
    ], "one judge.drift per (route, eval set) whose run was suspect"
    for d in drifts:
        assert d["run_id"] == seventh[d["route"]]["id"]
        assert d["judge"] == "default"
        assert d["canaries"] == [
            {"criterion": "correctness", "expected": 5.0, "got": 1.0, "error": None}
        ], "a judge that answered, wrongly, has no error"
    sent = len(events(hook))

    # Further suspect days, cheap still failing: no second drift, traffic still stays.
    for n in range(8, 7 + suspect_days):
        day(config, n)

        assert set(runs_on(db, n)) == set(ROUTES)
        assert all(r["judge_suspect"] for r in runs_on(db, n).values())
        assert events(hook)[sent:] == [], "drift is raised once, not on every suspect run"
        assert [v["version"] for v in rows(db, "policy_versions")] == [1]
        assert chain_on_disk(tmp_path) == list(ROUTES)
        assert [i["status"] for i in rows(db, "incidents")] == ["open"]

    # The judge is back, cheap still fails: now the policy acts on the open incident.
    restored = 7 + suspect_days
    patch(sim, JUDGE, {"quality": 1.0})
    capsys.readouterr()
    day(config, restored)

    assert not any(r["judge_suspect"] for r in runs_on(db, restored).values())
    assert "policy chat: demoted cheap; active chain mid → premium" in capsys.readouterr().err
    assert chain_on_disk(tmp_path) == ["mid", "premium"]
    versions = rows(db, "policy_versions")
    assert [(v["version"], v["chain"]) for v in versions] == [
        (1, list(ROUTES)),
        (2, ["mid", "premium"]),
    ]
    assert versions[1]["incident_id"] == incident["id"]
    later = events(hook)[sent:]
    assert [e["event"] for e in later] == ["policy.changed"], "a restored judge is no drift"
    (changed,) = later
    assert changed["route"] == "cheap"
    assert changed["run_id"] == runs_on(db, restored)["cheap"]["id"]
    assert changed["chain"] == ["mid", "premium"]
    assert changed["previous_chain"] == list(ROUTES)
    assert changed["incident_id"] == incident["id"]


BUDGET_SPENT_AT_ONCE = {
    "price": {"input_per_mtok": 10_000.0, "output_per_mtok": 10_000.0},
    "daily_budget_usd": 0.01,
}
"""A judge whose first call's estimate alone passes its daily budget."""


@pytest.mark.parametrize(
    ("judge_faults", "judge", "error"),
    [
        ({"server_error": 1.0}, None, "judge call failed: server_error: "),
        ({"rate_limited": 1.0}, None, "judge call failed: rate_limited: "),
        (None, {"structured_output": False}, "judge reply unreadable: no verdict"),
        (None, BUDGET_SPENT_AT_ONCE, "judge budget reached: default may spend $0.01 a day"),
    ],
    ids=["server-error", "rate-limited", "unreadable-reply", "budget"],
)
def test_judge_drift_says_why_the_judge_gave_no_verdict_on_a_canary(
    tmp_path: Path,
    sim: str,
    hook: Receiver,
    judge_faults: dict[str, float] | None,
    judge: dict[str, Any] | None,
    error: str,
) -> None:
    """A judge that failed reads apart from one that drifted: ``got`` is null and
    ``error`` names the failure, as stored in ``canary_results``."""
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, hook, db, judge)
    if judge_faults is not None:
        patch(sim, JUDGE, {"faults": judge_faults})

    day(config, 1)

    assert all(r["judge_suspect"] for r in runs_on(db, 1).values())
    drifts = named(hook, "judge.drift")
    assert sorted(d["route"] for d in drifts) == sorted(ROUTES)
    for d in drifts:
        (canary,) = d["canaries"]
        assert (canary["criterion"], canary["expected"], canary["got"]) == (
            "correctness",
            5.0,
            None,
        )
        assert canary["error"].startswith(error), canary["error"]
        assert "\n" not in canary["error"]
    assert {c["error"] for c in rows(db, "canary_results")} == {
        d["canaries"][0]["error"] for d in drifts
    }


def test_judge_drift_is_raised_again_when_a_drifted_judge_starts_failing(
    tmp_path: Path, sim: str, hook: Receiver
) -> None:
    """Still suspect, for a new reason: moved verdicts one day, none the next."""
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config = project(tmp_path, sim, hook, db)
    patch(sim, JUDGE, {"quality": 0.0})
    day(config, 1)
    patch(sim, JUDGE, {"faults": {"server_error": 1.0}})

    day(config, 2)
    day(config, 3)

    drifts = named(hook, "judge.drift")
    assert all(r["judge_suspect"] for r in rows(db, "runs"))
    by_day = sorted((d["at"][:10], d["kind"]) for d in drifts)
    assert by_day == [("2026-11-01", "drifted")] * 3 + [("2026-11-02", "no_verdict")] * 3
