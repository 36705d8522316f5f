"""A run killed mid-way resumes with exactly one result per (item, sample); two runs of
one slot never both write. Real processes, SIGKILL, the simulator on loopback."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from runner_project import SIM_SCENARIO, rows, write_project

AT = "2026-11-21T06:00:00Z"
ITEMS = [
    {
        "id": f"q{i:02d}",
        "input": f"Question number {i}?",
        "reference": f"Answer {i}",
        "checks": [{"contains": f"{i}"}],
    }
    # 80 items at 150 ms, 2 in flight: a run lasts 6 s, ample for a second process to
    # start (numpy and scipy imports included) on a busy machine while the first runs.
    for i in range(80)
]


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with serve_in_thread(create_app(parse_scenario(SIM_SCENARIO), {})) as url:
        yield url


def start_run(config: Path, *extra: str) -> subprocess.Popen[str]:
    at = list(extra) if extra else ["--at", AT]
    return subprocess.Popen(
        [sys.executable, "-m", "routewatch", "run", "-c", str(config), *at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def results_stored(db: str) -> int:
    try:
        return len(rows(db, "results"))
    except Exception:  # the schema is not there yet
        return 0


def wait_for_results(db: str, count: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (stored := results_stored(db)) < count:
        assert time.monotonic() < deadline, f"only {stored} results after {timeout}s"
        time.sleep(0.05)
    return stored


def answer_fast(sim: str) -> None:
    """From now on the ``slow`` model answers at once: the rest of a run need not wait.

    Only the simulator changes; the route and its config stay as they were.
    """
    httpx.patch(f"{sim}/admin/models/slow", json={"latency_ms": {"fixed": 2}}).raise_for_status()


@pytest.fixture
def project(tmp_path: Path, sim: str) -> Iterator[tuple[Path, str]]:
    config = write_project(
        tmp_path, sim, {"r": {"model": "slow"}}, items=ITEMS, provider={"max_concurrency": 2}
    )
    yield config, f"sqlite:///{tmp_path / 'rw.db'}"
    httpx.delete(f"{sim}/admin/models/slow").raise_for_status()


@pytest.mark.parametrize("again", [["--at", AT], ["--route", "r"]], ids=["same-at", "no-at"])
def test_a_killed_run_resumes_and_stores_each_result_once(
    project: tuple[Path, str], sim: str, again: list[str]
) -> None:
    config, db = project
    first = start_run(config)
    before_kill = wait_for_results(db, 6)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    stored = results_stored(db)
    assert before_kill <= stored < len(ITEMS)
    answer_fast(sim)
    dry = subprocess.run(
        [sys.executable, "-m", "routewatch", "run", "-c", str(config), *again, "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = [ln.split() for ln in dry.stdout.splitlines() if ln.startswith("r ")]
    assert row[4:9] == ["resume", "run", "1", f"({stored}", "of"]
    assert row[12] == str(len(ITEMS) - stored), "the calls left"
    assert results_stored(db) == stored, "a dry run writes nothing"

    second = start_run(config, *again)
    _, err = second.communicate(timeout=60)

    assert second.returncode == 0, err
    assert f"resumed run 1: {stored} result(s) were stored, {len(ITEMS) - stored} replayed" in err
    keys = Counter((r["item_id"], r["sample"]) for r in rows(db, "results"))
    assert len(keys) == len(ITEMS)
    assert set(keys.values()) == {1}
    runs = rows(db, "runs")
    assert [(r["status"], r["results_total"]) for r in runs] == [("completed", len(ITEMS))]


def test_two_runs_of_one_slot_never_both_write(project: tuple[Path, str]) -> None:
    config, db = project
    first = start_run(config)
    wait_for_results(db, 1)
    second = start_run(config)

    _, err2 = second.communicate(timeout=60)
    _, err1 = first.communicate(timeout=60)

    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    assert "being run by" in err2
    assert len(rows(db, "results")) == len(ITEMS)
    assert len(rows(db, "runs")) == 1


def test_a_run_stopped_by_a_database_failure_is_resumed_by_the_same_process(
    tmp_path: Path, sim: str
) -> None:
    """An unexpected error (here SQLite refusing writes, as a failing disk or a database
    failover would) leaves the run ``running``; a long-lived process such as the daemon
    must not then see it as still held by itself."""
    import asyncio

    import sqlalchemy
    from sqlalchemy import text

    from routewatch.clock import SystemClock, parse_instant
    from routewatch.project import load_project
    from routewatch.runner import execute, plan_runs
    from routewatch.store.migrate import open_database
    from routewatch.store.runs import orphaned_runs

    items = ITEMS[:20]
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    config = write_project(
        tmp_path, sim, {"r": {"model": "perfect"}}, items=items, provider={"max_concurrency": 2}
    )
    project = load_project(config, {})
    engine = open_database(db)
    clock = SystemClock()
    at = parse_instant(AT)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER failing_disk BEFORE INSERT ON results "
                "WHEN (SELECT count(*) FROM results) >= 3 "
                "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
            )
        )

    def replay() -> Any:
        plans = plan_runs(project.config, routes=["r"], at=at, now=clock.now())
        return asyncio.run(execute(project, engine, plans, env={}, clock=clock))

    with pytest.raises(sqlalchemy.exc.DBAPIError, match="simulated disk failure"):
        replay()
    assert orphaned_runs(engine, ["r"], clock.now()) == [("r", at)]
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER failing_disk"))

    (report,) = replay()
    engine.dispose()

    assert report.outcome.value == "resumed"
    keys = Counter(r["item_id"] for r in rows(db, "results"))
    assert set(keys) == {i["id"] for i in items}
    assert set(keys.values()) == {1}
    assert [r["status"] for r in rows(db, "runs")] == ["completed"]


def test_ctrl_c_stops_a_run_with_the_shells_exit_code_and_leaves_it_resumable(
    project: tuple[Path, str], sim: str
) -> None:
    config, db = project
    first = start_run(config)
    wait_for_results(db, 3)

    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=30)

    assert first.returncode == 130, err
    assert err.strip().endswith("interrupted")
    answer_fast(sim)
    second = start_run(config)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "resumed run 1" in err


def test_a_resumed_run_that_fails_says_how_to_retry_its_own_slot(tmp_path: Path, sim: str) -> None:
    """The slot to repeat is the interrupted run's, not the now a plain `run` plans."""
    config = write_project(
        tmp_path,
        sim,
        {"r": {"model": "slow"}},
        items=ITEMS,
        provider={"max_concurrency": 2, "api_key_env": "RW_RESUME_KEY"},
    )
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    argv = [sys.executable, "-m", "routewatch", "run", "-c", str(config)]
    with_key = {**os.environ, "RW_RESUME_KEY": "sk-resume"}
    without_key = {k: v for k, v in os.environ.items() if k != "RW_RESUME_KEY"}
    first = subprocess.Popen([*argv, "--at", AT], env=with_key, stderr=subprocess.PIPE, text=True)
    wait_for_results(db, 3)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)

    again = subprocess.run(
        [*argv, "--route", "r"], env=without_key, capture_output=True, text=True, timeout=60
    )

    assert again.returncode == 2, again.stderr
    hint = "r x bench: run 1 failed; once the cause is fixed, `routewatch run --route r --at "
    assert f"{hint}{AT}` retries it" in again.stderr
    httpx.delete(f"{sim}/admin/models/slow").raise_for_status()
