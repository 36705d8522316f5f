from datetime import UTC, datetime
from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.clock import FixedClock
from routewatch.demo import run_demo
from routewatch.store.runs import ClaimOutcome
from runner_project import rows

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_demo_backfills_daily_runs_of_every_route(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", env={}, clock=FixedClock(NOW), days=2)

    assert [(r.route, r.at.date().day, r.outcome) for r in result.reports] == [
        (route, day, ClaimOutcome.started)
        for day in (22, 23)
        for route in ("chat-flash", "chat-pro", "chat-premium")
    ]
    runs = rows(f"sqlite:///{tmp_path / 'demo' / 'routewatch.db'}", "runs")
    assert {r["status"] for r in runs} == {"completed"}
    assert all(r["results_total"] == 6 for r in runs)


def test_a_second_demo_reuses_the_project_and_skips_done_slots(tmp_path: Path) -> None:
    run_demo(tmp_path, env={}, clock=FixedClock(NOW), days=1)

    again = run_demo(tmp_path, env={}, clock=FixedClock(NOW), days=1)

    assert {r.outcome for r in again.reports} == {ClaimOutcome.completed}


def test_demo_command_prints_runs_and_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["demo", "--dir", str(tmp_path / "d"), "--days", "1"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("support-faq") == 3
    assert "policy  mode  active chain" in out
