"""`routewatch status` after real runs against the simulator."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routewatch.cli import run
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
    assert set(by_route["good"]) == {"route", "state", "last_run", "baseline", "open_incident"}
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


def test_status_table_lists_every_route(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, {"a": {"model": "perfect"}, "b": {"model": "perfect"}})

    assert run(["status", "-c", str(config)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:3] for ln in lines[1:3]] == [
        ["a", "unknown", "never"],
        ["b", "unknown", "never"],
    ]
