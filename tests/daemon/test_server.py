"""The daemon's HTTP surface, served by uvicorn on a loopback port over a real database.

The scheduler is not under test: ``trigger_runs`` only records what it was asked. Tests
that read the store run on SQLite and PostgreSQL; the HTTP-only ones on SQLite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert, update

from routewatch.cli import run
from routewatch.config import Config, Server, load_config
from routewatch.daemon.server import MAX_BODY_BYTES, create_app
from routewatch.daemon.state import DaemonState
from routewatch.errors import UnavailableError, UsageError
from routewatch.policy import manage
from routewatch.report.render import CSP
from routewatch.sim.server import serve_in_thread
from routewatch.status import build_status
from routewatch.store.migrate import create_engine_for, open_database
from routewatch.store.nodata import RUNS_METRIC
from routewatch.store.outbox import enqueue
from routewatch.store.tables import (
    AlertState,
    AlertStateRow,
    IncidentRow,
    RunStatus,
)
from runner_project import rows
from store_rows import add_run, open_incident

TOKEN = "rw-api-token-5c1e9d0a77f2"
TOKEN_VAR = "RW_TEST_API_TOKEN"
AT = datetime(2026, 11, 9, 6, 0, tzinfo=UTC)
STARTED = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


@dataclasses.dataclass
class Daemon:
    """A served app and what it was built on."""

    url: str
    state: DaemonState
    root: Path
    triggered: list[list[str]] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return self.state.engine

    @property
    def config(self) -> Config:
        return self.state.config

    def post(self, path: str, body: Any = None, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}")


def write_config(root: Path, db_url: str) -> Path:
    config = {
        "database_url": db_url,
        "providers": {"p": {"base_url": "http://127.0.0.1:9/v1"}},
        "routes": {
            name: {"provider": "p", "model": f"model-{name}", "evals": ["faq"]}
            for name in ("a", "b", "c")
        },
        "policies": {
            "chat": {
                "chain": ["a", "b", "c"],
                "mode": "auto",
                "publish": [{"type": "json", "path": "policy/chat.json"}],
            }
        },
        "server": {"token_env": TOKEN_VAR},
    }
    path = root / "routewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def serve(root: Path, db_url: str) -> Iterator[Daemon]:
    config = load_config(write_config(root, db_url), {})
    engine = open_database(config.database_url)
    triggered: list[list[str]] = []

    async def trigger_runs(routes: list[str]) -> list[str]:
        unknown = [r for r in routes if r not in config.routes]
        if unknown:
            known = ", ".join(sorted(config.routes))
            raise UsageError(f"unknown route(s) {', '.join(unknown)}; known: {known}")
        triggered.append(routes)
        return routes or list(config.routes)

    state = DaemonState(
        config=config,
        engine=engine,
        env={TOKEN_VAR: TOKEN},
        started_at=STARTED,
        reports_dir=root / "reports",
        scheduler_alive=lambda: True,
        is_leader=lambda: True,
        trigger_runs=trigger_runs,
    )
    try:
        with serve_in_thread(create_app(state)) as url:
            yield Daemon(url=url, state=state, root=root, triggered=triggered)
    finally:
        engine.dispose()


@pytest.fixture
def daemon(tmp_path: Path, db_url: str) -> Iterator[Daemon]:
    """The app on SQLite and on PostgreSQL."""
    yield from serve(tmp_path, db_url)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("web")
    yield from serve(root, f"sqlite:///{root / 'rw.db'}")


@pytest.fixture
def web(served: Daemon, tmp_path: Path) -> Iterator[Daemon]:
    """One app on SQLite for the tests that do not depend on the database.

    Starting a server per test would cost most of the time budget; each test gets the
    state back as it was, and a reports folder of its own.
    """
    saved = dataclasses.replace(served.state)
    served.state.reports_dir = tmp_path / "reports"
    yield served
    for f in dataclasses.fields(saved):
        setattr(served.state, f.name, getattr(saved, f.name))
    served.triggered.clear()


def published(daemon: Daemon, version: int) -> Any:
    """The json publisher's file once it holds ``version`` (it is written after the answer)."""
    path = daemon.root / "policy" / "chat.json"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text())["version"] == version:
            return json.loads(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached version {version}")


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: httpx would normalise ``..`` away."""
    conn = http.client.HTTPConnection(httpx.URL(url).host, httpx.URL(url).port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a metrics page, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# /healthz


def test_healthz_is_ok_with_each_routes_last_successful_run(daemon: Daemon) -> None:
    add_run(daemon.engine, "a", AT - timedelta(days=1))
    add_run(daemon.engine, "a", AT)
    add_run(daemon.engine, "a", AT + timedelta(days=1), status=RunStatus.failed)
    add_run(daemon.engine, "c", AT, errors_total=6)  # every call failed
    # Completed, but every call failed (the provider was down): not a success.
    add_run(daemon.engine, "a", AT + timedelta(days=2), errors_total=6)
    add_run(daemon.engine, "b", AT + timedelta(days=2), status=RunStatus.running)

    response = daemon.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "scheduler": True,
        "leader": True,
        "database": True,
        "started_at": STARTED.isoformat(),
        "last_successful_run": {"a": AT.isoformat(), "b": None, "c": None},
    }


def test_healthz_is_503_when_the_scheduler_is_dead(daemon: Daemon) -> None:
    daemon.state.scheduler_alive = lambda: False

    response = daemon.get("/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["scheduler"] is False
    assert response.json()["database"] is True


def test_an_unreachable_database_fails_healthz_but_metrics_still_answer(
    web: Daemon, tmp_path: Path
) -> None:
    web.state.engine = create_engine_for(f"sqlite:///{tmp_path / 'missing' / 'rw.db'}")

    health = web.get("/healthz")
    metrics = web.get("/metrics")

    assert health.status_code == 503
    assert health.json()["database"] is False
    assert health.json()["last_successful_run"] == {"a": None, "b": None, "c": None}
    assert metrics.status_code == 200
    assert samples(metrics.text)[("routewatch_database_up", ())] == 0
    assert samples(metrics.text)[("routewatch_scheduler_up", ())] == 1


def test_status_and_policy_answer_503_while_the_database_is_unreachable(
    web: Daemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage, not a bug: 503 with Retry-After, one log line, no traceback."""
    web.state.engine = create_engine_for(f"sqlite:///{tmp_path / 'missing' / 'rw.db'}")

    answers = [web.get("/status"), web.get("/policy/chat")]

    for answer in answers:
        assert answer.status_code == 503
        assert answer.json() == {"error": "the database is unavailable"}
        assert answer.headers["retry-after"] == "30"
    assert "/status: the database is unavailable: " in caplog.text
    assert "Traceback" not in caplog.text


def test_a_read_only_postgresql_is_an_outage(
    tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A standby after a failover refuses writes with an InternalError (SQLSTATE 25006)."""
    for web in serve(tmp_path, pg_url):
        web.state.engine.dispose()
        web.state.engine = create_engine_for(
            f"{pg_url}?options=-c%20default_transaction_read_only%3Don"
        )
        answer = web.post("/policy/chat/pin", {"routes": ["b", "a"]})
        web.state.engine.dispose()

        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "30"
        assert "read-only transaction" in caplog.text
        assert "Traceback" not in caplog.text


def test_a_statement_sqlite_cannot_run_is_a_bug_not_an_outage(
    web: Daemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite says ``no such table`` with the class it uses for a locked or missing file."""
    web.state.engine = create_engine_for(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables

    answer = web.get("/status")

    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error"}
    assert "retry-after" not in answer.headers
    assert "no such table" in caplog.text
    assert "GET /status failed" in caplog.text
    assert "the database is unavailable" not in caplog.text


# /metrics


def test_metrics_read_runs_judges_outbox_incidents_and_policies(daemon: Daemon) -> None:
    add_run(daemon.engine, "a", AT - timedelta(days=1), score=0.9, judge_calls=7)
    add_run(
        daemon.engine,
        "a",
        AT,
        score=0.8,
        pass_rate=0.75,
        error_rate=0.05,
        p95_latency_ms=1250.0,
        p50_ttft_ms=420.0,
        cost_usd=0.02,
        judge_calls=5,
        judge_calls_saved=3,
        judge_cost_usd=0.125,
    )
    add_run(daemon.engine, "a", AT + timedelta(days=1), status=RunStatus.failed)
    add_run(daemon.engine, "c", AT, errors_total=6)  # every call failed
    add_run(daemon.engine, "b", AT, status=RunStatus.running)
    open_incident(daemon.engine, "a", AT)
    manage.pin(daemon.engine, daemon.config, "chat", ["b", "a"], actor="test")
    with daemon.engine.begin() as conn:
        enqueue(conn, {"event": "incident.opened"}, ["webhook:0", "webhook:1"], AT)

    response = daemon.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)
    a, ab = (("route", "a"),), (("eval_set", "faq"), ("route", "a"))
    assert got[("routewatch_runs", (*a, ("status", "completed")))] == 2
    assert got[("routewatch_runs", (*a, ("status", "failed")))] == 1
    assert got[("routewatch_runs_in_progress", (("route", "b"),))] == 1
    assert got[("routewatch_judge_calls_total", a)] == 12
    assert got[("routewatch_judge_cache_hits_total", a)] == 3
    assert got[("routewatch_judge_cost_usd_total", a)] == 0.125
    assert got[("routewatch_last_run_score", ab)] == 0.8
    assert got[("routewatch_last_run_pass_rate", ab)] == 0.75
    assert got[("routewatch_last_run_error_rate", ab)] == 0.05
    assert got[("routewatch_last_run_p95_latency_seconds", ab)] == 1.25
    assert got[("routewatch_last_run_p50_ttft_seconds", ab)] == 0.42
    assert (
        "routewatch_last_run_p50_ttft_seconds",
        (("eval_set", "faq"), ("route", "c")),
    ) not in got
    assert got[("routewatch_last_run_cost_usd", ab)] == 0.02
    assert got[("routewatch_last_run_timestamp_seconds", ab)] == AT.timestamp()
    assert got[("routewatch_last_successful_run_timestamp_seconds", a)] == AT.timestamp()
    # A completed run whose every call failed is a last run, not a last success.
    c = (("route", "c"),)
    assert got[("routewatch_last_run_timestamp_seconds", (("eval_set", "faq"), *c))] > 0
    assert ("routewatch_last_successful_run_timestamp_seconds", c) not in got
    assert got[("routewatch_outbox_messages", (("status", "pending"),))] == 3  # 2 + 1 publish
    assert got[("routewatch_outbox_messages", (("status", "dead"),))] == 0
    assert got[("routewatch_open_incidents", a)] == 1
    assert got[("routewatch_open_incidents", (("route", "c"),))] == 0
    version = build_status(daemon.engine, daemon.config).policies[0].version
    assert got[("routewatch_policy_version", (("policy", "chat"),))] == version == 1
    assert got[("routewatch_database_up", ())] == 1


def test_metrics_say_which_scheduled_routes_are_late(daemon: Daemon) -> None:
    scheduled = {
        name: route.model_copy(update={"schedule": "0 6 * * *"})
        for name, route in daemon.config.routes.items()
        if name in ("a", "b")
    }
    daemon.state.config = daemon.config.model_copy(
        update={"routes": {**daemon.config.routes, **scheduled}}
    )
    with daemon.engine.begin() as conn:
        for route, state in (
            ("a", AlertState.no_data),
            ("b", AlertState.ok),
            ("c", AlertState.no_data),
        ):
            conn.execute(
                insert(AlertStateRow).values(route=route, metric=RUNS_METRIC, state=state, since=AT)
            )

    got = samples(daemon.get("/metrics").text)

    assert got[("routewatch_route_no_data", (("route", "a"),))] == 1
    assert got[("routewatch_route_no_data", (("route", "b"),))] == 0
    # Taken off its schedule, c is checked no more: its stored state means nothing now.
    assert ("routewatch_route_no_data", (("route", "c"),)) not in got
    status = {r["route"]: r for r in daemon.get("/status").json()["routes"]}
    assert status["a"]["no_data_since"] == AT.isoformat().replace("+00:00", "Z")
    assert status["c"]["no_data_since"] is None


def test_every_metric_is_prefixed_and_documented(web: Daemon) -> None:
    families = list(text_string_to_metric_families(web.get("/metrics").text))

    assert len(families) > 10
    for family in families:
        assert family.name.startswith("routewatch_")
        assert family.documentation


# /status and /policy


def test_status_is_the_status_json_document(daemon: Daemon) -> None:
    add_run(daemon.engine, "a", AT, score=0.8)
    open_incident(daemon.engine, "a", AT)

    body = daemon.get("/status").json()

    assert body == build_status(daemon.engine, daemon.config).model_dump(mode="json")
    assert [r["route"] for r in body["routes"]] == ["a", "b", "c"]
    assert body["routes"][0]["state"] == "degraded"
    assert body["routes"][0]["last_run"]["score"] == 0.8
    assert body["routes"][0]["open_incident"]["metric"] == "score"
    assert body["policies"] == [
        {
            "name": "chat",
            "mode": "auto",
            "configured_chain": ["a", "b", "c"],
            "active_chain": ["a", "b", "c"],
            "version": 0,
            "pins": None,
        }
    ]


def test_policy_json_of_a_known_policy(daemon: Daemon) -> None:
    body = daemon.get("/policy/chat").json()

    assert body["policy"] == "chat"
    assert body["version"] == 0
    assert body["chain"] == ["a", "b", "c"]
    assert body["demoted"] == []


def test_an_unknown_policy_is_404_naming_the_known_ones(web: Daemon) -> None:
    response = web.get("/policy/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown policy 'nope'; known: chat"}


def test_unknown_paths_and_methods_answer_json(web: Daemon) -> None:
    missing = web.get("/nothing-here")
    wrong_method = web.get("/runs")

    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        {"error": "method not allowed"},
    )


# /reports


def write_reports(web: Daemon) -> Path:
    folder = web.state.reports_dir
    folder.mkdir()
    for i, name in enumerate(["2026-W45.html", "2026-W47.html", "2026-W46.html"]):
        (folder / name).write_text(f"<html><body>report {name}</body></html>")
        os.utime(folder / name, (1_700_000_000 + i * 100, 1_700_000_000 + i * 100))
    (folder / "notes.txt").write_text("not a report")
    (folder / "with space.html").write_text("not a servable name")
    (folder.parent / "secret.html").write_text("outside the reports folder")
    (folder / "link.html").symlink_to(folder.parent / "secret.html")
    return folder


def test_reports_index_lists_reports_newest_first(web: Daemon) -> None:
    write_reports(web)

    response = web.get("/reports/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    listed = [line.split('"')[1] for line in response.text.splitlines() if "<li>" in line]
    assert listed == ["2026-W46.html", "2026-W47.html", "2026-W45.html"]


def test_reports_index_without_a_folder_says_there_are_none(web: Daemon) -> None:
    response = web.get("/reports/")

    assert response.status_code == 200
    assert "No reports yet" in response.text


def test_a_report_is_served_with_a_policy_that_loads_nothing(web: Daemon) -> None:
    write_reports(web)

    response = web.get("/reports/2026-W47.html")

    assert response.status_code == 200
    assert response.text == "<html><body>report 2026-W47.html</body></html>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    "path",
    [
        "/reports/../secret.html",
        "/reports/..%2fsecret.html",
        "/reports/%2e%2e%2fsecret.html",
        "/reports/..%5csecret.html",
        "/reports/%2E%2E/secret.html",
        "/reports//etc/passwd",
        "/reports/%2fetc%2fpasswd",
        "/reports/link.html",
        "/reports/notes.txt",
        "/reports/with%20space.html",
        "/reports/missing.html",
    ],
)
def test_only_plain_report_names_inside_the_folder_are_served(web: Daemon, path: str) -> None:
    write_reports(web)

    status, body = raw_get(web.url, path)

    assert status == 404
    assert b"outside" not in body
    assert json.loads(body)["error"]


# POST: authentication


def test_a_post_without_a_token_is_401(web: Daemon) -> None:
    response = web.post("/runs", {}, token=None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]
    assert web.triggered == []


def test_a_post_with_a_wrong_token_is_401(web: Daemon) -> None:
    before = web.get("/policy/chat").json()["version"]

    response = web.post("/policy/chat/pin", {"routes": ["b"]}, token=TOKEN + "x")

    assert response.status_code == 401
    assert response.json() == {"error": "the bearer token is wrong"}
    assert web.get("/policy/chat").json()["version"] == before


def test_posts_are_refused_while_the_token_variable_is_unset(web: Daemon) -> None:
    web.state.env = {}

    response = web.post("/runs", {})

    assert response.status_code == 403
    assert TOKEN_VAR in response.json()["error"]
    assert web.triggered == []


def test_posts_are_refused_while_no_token_is_configured(web: Daemon) -> None:
    web.state.config = web.config.model_copy(update={"server": Server()})

    response = web.post("/runs", {}, token=None)

    assert response.status_code == 403
    assert "server.token_env" in response.json()["error"]


# POST /runs


def test_runs_start_the_named_routes(web: Daemon) -> None:
    response = web.post("/runs", {"routes": ["b"]})

    assert response.status_code == 202
    assert response.json() == {"accepted": ["b"], "already_running": []}
    assert web.triggered == [["b"]]


@pytest.mark.parametrize("body", [None, {}, {"routes": []}])
def test_runs_without_routes_start_every_route(web: Daemon, body: Any) -> None:
    response = web.post("/runs", body)

    assert response.status_code == 202
    assert response.json() == {"accepted": ["a", "b", "c"], "already_running": []}


def test_runs_of_an_unknown_route_are_422(web: Daemon) -> None:
    response = web.post("/runs", {"routes": ["a", "zz"]})

    assert response.status_code == 422
    assert response.json() == {"error": "unknown route(s) zz; known: a, b, c"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"routes": [""]}, "routes.0: String should have at least 1 character"),
        ({"routes": "a"}, "routes: Input should be a valid array"),
        ({"routes": [1]}, "routes.0: Input should be a valid string"),
        ({"route": ["a"]}, "route: Extra inputs are not permitted"),
        (["a"], "body: Input should be an object"),
        ("{not json", "body: Invalid JSON"),
    ],
)
def test_a_body_that_fails_validation_is_422_naming_the_field(
    web: Daemon, body: Any, reason: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    response = httpx.post(f"{web.url}/runs", content=content, headers=headers)

    assert response.status_code == 422
    assert response.json()["error"].startswith(f"invalid request body: {reason}")
    assert response.json()["detail"][0]["msg"] in response.json()["error"]
    assert web.triggered == []


def test_a_route_named_twice_is_started_once(web: Daemon) -> None:
    response = web.post("/runs", {"routes": ["b", "a", "b"]})

    assert response.status_code == 202
    assert response.json() == {"accepted": ["b", "a"], "already_running": []}
    assert web.triggered == [["b", "a"]]


@pytest.mark.parametrize("path", ["/runs", "/policy/chat/pin"])
def test_a_key_named_twice_is_422_not_last_one_wins(web: Daemon, path: str) -> None:
    before = web.get("/policy/chat").json()["version"]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    content = '{"routes": ["a"], "routes": ["b"]}'

    response = httpx.post(f"{web.url}{path}", content=content, headers=headers)

    assert response.status_code == 422
    assert response.json() == {"error": "invalid request body: key 'routes' appears twice"}
    assert web.triggered == []
    assert web.get("/policy/chat").json()["version"] == before


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_413_and_read_no_further(web: Daemon, declared: bool) -> None:
    """With a Content-Length, before reading; chunked, as soon as the limit is passed."""
    names = json.dumps({"routes": ["a"] * (MAX_BODY_BYTES // 4)}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def chunks() -> Iterator[bytes]:
        yield from (names[i : i + 4096] for i in range(0, len(names), 4096))

    content: Any = names if declared else chunks()
    response = httpx.post(f"{web.url}/runs", content=content, headers=headers)

    assert len(names) > MAX_BODY_BYTES
    assert response.status_code == 413
    assert response.json() == {"error": f"request body over {MAX_BODY_BYTES} bytes"}
    assert web.triggered == []


def test_json_nested_past_pythons_limit_is_422_not_a_500(
    web: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    deep = "[" * 30_000 + "]" * 30_000
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    response = httpx.post(f"{web.url}/runs", content=deep, headers=headers)

    assert response.status_code == 422
    assert response.json()["error"].startswith("invalid request body: body: ")
    assert web.triggered == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_client_that_leaves_mid_body_is_no_server_error(
    web: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = web.url.removeprefix("http://").split(":")
    caplog.set_level(logging.INFO, logger="routewatch")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b'Content-Length: 1000\r\n\r\n{"routes": ['
        )
    deadline = time.monotonic() + 10
    while "the client left before sending its body" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert web.triggered == []


def test_runs_asked_for_while_the_daemon_stops_get_503(web: Daemon) -> None:
    async def stopping(routes: list[str]) -> list[str]:
        raise UnavailableError("the daemon is stopping; no new runs")

    web.state.trigger_runs = stopping

    response = web.post("/runs", {})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json() == {"error": "the daemon is stopping; no new runs"}


def test_a_failing_handler_is_a_bare_500(web: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(routes: list[str]) -> list[str]:
        raise RuntimeError("scheduler internals exploded")

    web.state.trigger_runs = broken

    response = web.post("/runs", {})

    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "scheduler internals exploded" in caplog.text


# POST /policy/NAME/pin and unpin


def test_pin_then_unpin_changes_the_policy_and_its_published_file(daemon: Daemon) -> None:
    pinned = daemon.post("/policy/chat/pin", {"routes": ["b", "a"]})

    assert pinned.status_code == 200
    assert pinned.json() | {"updated_at": None} == {
        "policy": "chat",
        "version": 1,
        "updated_at": None,
        "chain": ["b", "a"],
        "demoted": [],
        "pins": ["b", "a"],
        "changed": True,
        "warnings": [],
    }
    assert daemon.get("/policy/chat").json()["chain"] == ["b", "a"]
    assert published(daemon, 1)["chain"] == ["b", "a"]

    unpinned = daemon.post("/policy/chat/unpin")

    assert (unpinned.json()["version"], unpinned.json()["changed"]) == (2, True)
    assert unpinned.json()["pins"] is None
    assert daemon.get("/policy/chat").json()["chain"] == ["a", "b", "c"]
    assert published(daemon, 2)["chain"] == ["a", "b", "c"]
    assert daemon.post("/policy/chat/unpin").json()["changed"] is False


def test_concurrent_pins_are_each_answered_with_their_own_version(daemon: Daemon) -> None:
    """Not the newest version when the answer is written: another pin may follow it."""
    chains = [["a"], ["b"], ["c"], ["a", "b"], ["b", "c"], ["c", "a"], ["b", "a"], ["c", "b"]]

    async def pin_all() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=daemon.url, headers=headers, timeout=30) as c:
            return await asyncio.gather(
                *(c.post("/policy/chat/pin", json={"routes": chain}) for chain in chains)
            )

    answers = [r.json() for r in asyncio.run(pin_all())]

    assert [(a["chain"], a["pins"]) for a in answers] == [(c, c) for c in chains]
    assert sorted(a["version"] for a in answers) == list(range(1, len(chains) + 1))
    url = daemon.engine.url.render_as_string(hide_password=False)
    versions = sorted(rows(url, "policy_versions"), key=lambda v: v["version"])
    history = {v["version"]: v["chain"] for v in versions}
    assert all(history[a["version"]] == a["chain"] for a in answers)
    # Each stamped no earlier than the one before: the published updated_at never goes back.
    stamps = [v["created_at"] for v in versions]
    assert stamps == sorted(stamps)


def test_incidents_lists_them_as_the_command_does(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` shows one per route; resolving over HTTP needs the ids of them all."""
    add_run(daemon.engine, "a", STARTED)
    add_run(daemon.engine, "b", STARTED)
    first = open_incident(daemon.engine, "a", STARTED)
    with daemon.engine.begin() as conn:  # one open incident per metric
        conn.execute(update(IncidentRow).where(IncidentRow.id == first).values(metric="error_rate"))
    second = open_incident(daemon.engine, "a", STARTED + timedelta(hours=1))
    other = open_incident(daemon.engine, "b", STARTED)
    daemon.post(f"/incidents/{other}/resolve", {"reason": "fixed upstream"})

    listed = daemon.get("/incidents")
    of_a = daemon.get("/incidents?route=a")
    every = daemon.get("/incidents?all=true&limit=2")
    config = daemon.root / "routewatch.yaml"
    assert run(["incidents", "-c", str(config), "--json"]) == 0

    assert listed.status_code == 200
    assert listed.json() == json.loads(capsys.readouterr().out)
    assert [i["id"] for i in listed.json()] == [second, first]
    assert [i["id"] for i in of_a.json()] == [second, first]
    assert len(every.json()) == 2
    assert {i["configured"] for i in listed.json()} == {True}
    for query, error in [
        ("?route=nope", "unknown route(s) nope; known: a, b, c"),
        ("?all=maybe", "all: give true or false"),
        ("?all=true&limit=0", "limit: give a whole number of at least 1"),
        ("?routes=a", "unknown query parameter(s) routes"),
    ]:
        bad = daemon.get(f"/incidents{query}")
        assert (bad.status_code, bad.json()) == (422, {"error": error}), query


def test_pinning_a_route_with_an_open_incident_warns_in_the_answer(daemon: Daemon) -> None:
    add_run(daemon.engine, "b", STARTED)
    incident = open_incident(daemon.engine, "b", STARTED)

    answer = daemon.post("/policy/chat/pin", {"routes": ["b", "a"]}).json()

    assert answer["chain"] == ["b", "a"]
    assert answer["warnings"] == [
        f"b has open incident(s) (#{incident} score); the pin keeps it in the chain until `unpin`"
    ]
    assert "warnings" not in daemon.post("/policy/chat/unpin").json()


def test_pinning_an_unknown_policy_is_404(web: Daemon) -> None:
    response = web.post("/policy/nope/pin", {"routes": ["a"]})

    assert response.status_code == 404
    assert "unknown policy 'nope'" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"routes": ["a", "zz"]}, "unknown route(s) zz; known: a, b, c"),
        ({"routes": ["a", "a"]}, "a appears twice in the pinned chain"),
        ({"routes": []}, "invalid request body: routes: List should have at least 1 item"),
        (None, "invalid request body: routes: Field required"),
    ],
)
def test_a_pin_that_cannot_apply_is_422(web: Daemon, body: Any, reason: str) -> None:
    before = web.get("/policy/chat").json()["version"]

    response = web.post("/policy/chat/pin", body)

    assert response.status_code == 422
    assert response.json()["error"].startswith(reason)
    assert web.get("/policy/chat").json()["version"] == before


# POST /incidents/ID/resolve


def test_resolving_an_incident_restores_its_demoted_route(daemon: Daemon) -> None:
    add_run(daemon.engine, "a", STARTED)
    incident = open_incident(daemon.engine, "a", STARTED)
    manage.pin(daemon.engine, daemon.config, "chat", ["a", "b", "c"])
    manage.unpin(daemon.engine, daemon.config, "chat")
    assert daemon.get("/policy/chat").json()["chain"] == ["b", "c"], "a is demoted"

    response = daemon.post(f"/incidents/{incident}/resolve", {"reason": "fixed upstream"})

    assert response.status_code == 200
    answer = response.json()
    assert answer["changed"] is True
    resolved = answer["incident"]
    assert (resolved["id"], resolved["status"], resolved["resolved_by"]) == (
        incident,
        "resolved",
        "api",
    )
    assert resolved["resolution_reason"] == "fixed upstream"
    assert resolved["resolved_at"].endswith("Z")
    assert answer["policy_actions"][0]["changed"] is True
    assert daemon.get("/policy/chat").json()["chain"] == ["a", "b", "c"]
    assert published(daemon, 3)["chain"] == ["a", "b", "c"]
    again = daemon.post(f"/incidents/{incident}/resolve")
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert again.json()["incident"]["resolution_reason"] == "fixed upstream"


def test_resolving_needs_the_token_and_a_known_incident(web: Daemon) -> None:
    add_run(web.engine, "b", STARTED)
    incident = open_incident(web.engine, "b", STARTED)
    try:
        assert web.post(f"/incidents/{incident}/resolve", token=None).status_code == 401
        for unknown in (999999, 2**31, 10**20):
            missing = web.post(f"/incidents/{unknown}/resolve")
            assert missing.status_code == 404
            assert missing.json()["error"].startswith(f"no incident #{unknown};")
        too_long = web.post(f"/incidents/{incident}/resolve", {"reason": "x" * 501})
        assert too_long.status_code == 422
        assert too_long.json()["error"].startswith("invalid request body: reason:")
        unknown_key = web.post(f"/incidents/{incident}/resolve", {"why": "x"})
        assert unknown_key.status_code == 422
        assert web.post("/incidents/abc/resolve").status_code == 404
        status = web.get("/status").json()
        (b,) = [r for r in status["routes"] if r["route"] == "b"]
        assert b["open_incident"]["id"] == incident, "nothing was resolved"
    finally:
        web.post(f"/incidents/{incident}/resolve")


def test_the_token_never_appears_in_answers_or_logs(
    web: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    write_reports(web)
    answers = [
        web.post("/runs", {"routes": ["zz"]}),
        web.post("/runs", {"routes": [""], "token": TOKEN}),
        web.post("/runs", {}, token=TOKEN[:-1]),
        web.post("/policy/chat/pin", {"routes": ["c"]}),
        web.post("/policy/chat/unpin"),
    ]
    answers += [web.get(p) for p in ("/healthz", "/metrics", "/status", "/policy/chat")]
    answers += [web.get("/reports/"), web.get("/reports/2026-W47.html")]
    published(web, answers[4].json()["version"])

    assert [a.status_code for a in answers[:5]] == [422, 422, 401, 200, 200]
    for answer in answers:
        assert TOKEN not in answer.text
        assert TOKEN[:-1] not in answer.text
    assert TOKEN[:-1] not in caplog.text
    assert "policy chat changed through the API" in caplog.text
