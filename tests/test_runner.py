"""`routewatch run` against the simulator on a loopback port: faults, samples, fallbacks."""

import json
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

from routewatch import runner
from routewatch.cli import run
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.migrate import SCHEMA_HEAD
from runner_project import faq_simulator, replay_with_slow_statements, rows, write_project

AT = "2026-11-20T06:00:00Z"
ITEMS = 6
FLAKY_MODELS = {"flaky": {"quality": 1.0, "faults": {"server_error": 0.6}}}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def run_route(
    tmp_path: Path, sim: str, url: str | None = None, **route: Any
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    config = write_project(tmp_path, sim, {"r": route}, database_url=url)
    code = run(["run", "-c", str(config), "--at", AT])
    db = url or f"sqlite:///{tmp_path / 'rw.db'}"
    return code, rows(db, "runs"), rows(db, "results")


@pytest.mark.parametrize(
    ("model", "stream", "error_class"),
    [
        ("rate-limited", False, "rate_limited"),
        ("failing", False, "server_error"),
        ("html", False, "bad_response"),
        ("truncating", False, "bad_response"),
        ("truncating", True, "bad_response"),
        ("resetting", False, "connection"),
    ],
)
def test_each_fault_class_is_recorded_and_the_run_completes(
    tmp_path: Path,
    sim: str,
    model: str,
    stream: bool,
    error_class: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, runs, results = run_route(tmp_path, sim, model=model, stream=stream)

    # The run completes and is stored; the command says nothing could be measured.
    assert code == 2
    assert f"every call failed ({ITEMS} {error_class}): " in capsys.readouterr().err
    assert [r["status"] for r in runs] == ["completed"]
    assert runs[0]["error_rate"] == 1.0
    assert runs[0]["score"] is None
    assert {r["error_class"] for r in results} == {error_class}
    assert {r["attempts"] for r in results} == {2}


def test_a_hang_past_the_timeout_is_recorded_as_timeout(tmp_path: Path, sim: str) -> None:
    config = write_project(
        tmp_path,
        sim,
        {"r": {"model": "hanging"}},
        provider={"timeout_s": 0.3, "max_retries": 0},
    )

    assert run(["run", "-c", str(config), "--at", AT]) == 2

    results = rows(f"sqlite:///{tmp_path / 'rw.db'}", "results")
    assert {r["error_class"] for r in results} == {"timeout"}
    assert all(250 <= r["latency_ms"] < 1500 for r in results)


def test_retry_after_is_honoured(tmp_path: Path, sim: str) -> None:
    """Each call waits out the 1.5 s Retry-After before its one retry; the backoff alone
    would wait at most 0.5 s, so a shorter run means the header was ignored."""
    _, runs, results = run_route(tmp_path, sim, model="rate-limited")

    elapsed = runs[0]["finished_at"] - runs[0]["started_at"]
    assert elapsed.total_seconds() >= 1.5
    assert {r["attempts"] for r in results} == {2}


def test_every_item_and_sample_is_stored_once_with_scores(tmp_path: Path, sim: str) -> None:
    code, runs, results = run_route(tmp_path, sim, model="perfect", samples=3)

    assert code == 0
    assert len({(r["item_id"], r["sample"]) for r in results}) == len(results) == ITEMS * 3
    assert runs[0]["score"] == 1.0
    assert runs[0]["pass_rate"] == 1.0
    assert runs[0]["items_total"] == ITEMS


def test_wrong_answers_lower_the_score(tmp_path: Path, sim: str) -> None:
    _, runs, _ = run_route(tmp_path, sim, model="hopeless")

    assert runs[0]["score"] < 0.8
    assert runs[0]["pass_rate"] <= 0.5
    assert runs[0]["error_rate"] == 0.0


def test_an_answer_from_a_fallback_model_is_flagged_and_left_out_of_quality(
    tmp_path: Path, sim: str
) -> None:
    _, runs, results = run_route(tmp_path, sim, model="fallback")

    assert {r["served_model"] for r in results} == {"perfect"}
    assert all(r["served_by_fallback"] for r in results)
    assert all(r["response_meta"]["x-litellm-attempted-fallbacks"] == "1" for r in results)
    assert runs[0]["fallback_total"] == ITEMS
    assert runs[0]["score"] is None


def test_streamed_route_records_time_to_first_token(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, runs, results = run_route(tmp_path, sim, model="slow", stream=True)

    assert all(r["ttft_ms"] is not None and r["ttft_ms"] < r["latency_ms"] for r in results)
    assert all(r["tokens_out"] for r in results)
    ttfts = sorted(r["ttft_ms"] for r in results)
    assert runs[0]["p50_ttft_ms"] == pytest.approx(statistics.median(ttfts))
    assert min(ttfts) <= runs[0]["p95_ttft_ms"] <= max(ttfts)
    assert runs[0]["p50_ttft_ms"] < runs[0]["p50_latency_ms"]
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[11:14] == ["p95", "ttft", "p50"]
    assert row.split()[13:15] == [f"{runs[0]['p50_ttft_ms']:.0f}", "ms"]
    config = str(tmp_path / "routewatch.yaml")
    assert run(["status", "-c", config, "--json"]) == 0
    (route,) = json.loads(capsys.readouterr().out)["routes"]
    assert route["last_run"]["p50_ttft_ms"] == pytest.approx(runs[0]["p50_ttft_ms"])
    assert run(["status", "-c", config]) == 0
    assert "ttft p50" in capsys.readouterr().out.splitlines()[0]


def test_a_route_that_does_not_stream_has_no_time_to_first_token(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, runs, _ = run_route(tmp_path, sim, model="slow")

    assert (runs[0]["p50_ttft_ms"], runs[0]["p95_ttft_ms"]) == (None, None)
    assert "ttft" not in capsys.readouterr().out
    config = str(tmp_path / "routewatch.yaml")
    assert run(["status", "-c", config, "--json"]) == 0
    (route,) = json.loads(capsys.readouterr().out)["routes"]
    assert route["last_run"]["p50_ttft_ms"] is None
    assert run(["status", "-c", config]) == 0
    assert "ttft" not in capsys.readouterr().out


def test_repeating_a_completed_slot_replays_nothing(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_route(tmp_path, sim, model="perfect")

    code, runs, results = run_route(tmp_path, sim, model="perfect")

    assert code == 0
    assert len(runs) == 1
    assert len(results) == ITEMS
    assert "already completed" in capsys.readouterr().err


def test_the_run_works_on_postgresql_too(tmp_path: Path, sim: str, pg_url: str) -> None:
    code, runs, results = run_route(tmp_path, sim, url=pg_url, model="perfect", samples=2)

    assert code == 0
    assert runs[0]["status"] == "completed"
    assert len(results) == ITEMS * 2
    assert runs[0]["at"].isoformat() == "2026-11-20T06:00:00+00:00"


def test_a_missing_api_key_fails_the_run_naming_the_variable(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(
        tmp_path, sim, {"r": {"model": "perfect"}}, provider={"api_key_env": "RW_TEST_ABSENT"}
    )

    code = run(["run", "-c", str(config), "--at", AT])

    assert code == 2
    assert "RW_TEST_ABSENT is not set" in capsys.readouterr().err
    runs = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")
    assert [(r["status"], "RW_TEST_ABSENT" in r["error_message"]) for r in runs] == [
        ("failed", True)
    ]


def test_a_failed_run_says_how_to_retry_its_slot_to_the_second(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --at the slot is now, seconds included, which the summary's times leave out."""
    monkeypatch.delenv("RW_TEST_ABSENT", raising=False)
    config = write_project(
        tmp_path, sim, {"r": {"model": "perfect"}}, provider={"api_key_env": "RW_TEST_ABSENT"}
    )
    assert run(["run", "-c", str(config)]) == 2
    ((failed,),) = [rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")]
    slot = failed["slot_key"].replace("+00:00", "Z")
    hint = f"`routewatch run --route r --at {slot}` retries it"
    assert f"r x support-faq: run {failed['id']} failed; once the cause is fixed, {hint}" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("RW_TEST_ABSENT", "sk-now-set")

    assert run(["run", "-c", str(config), "--route", "r", "--at", slot]) == 0

    (retried,) = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")
    assert (retried["id"], retried["status"]) == (failed["id"], "completed")


def test_an_unknown_route_is_bad_input(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})

    assert run(["run", "-c", str(config), "--route", "nope"]) == 1


def test_a_route_named_twice_runs_once(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}, "s": {"model": "perfect"}})

    assert run(["run", "-c", str(config), "--at", AT, "--route", "r", "--route", "r"]) == 0

    runs = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")
    assert [(r["route"], r["status"]) for r in runs] == [("r", "completed")]
    assert "busy" not in capsys.readouterr().out


def test_a_replay_leaves_the_orm_mappers_unconfigured(tmp_path: Path, sim: str) -> None:
    # The replay path's statements name tables, not mapped classes: the first statement
    # on a mapped class configures every mapper, tens of milliseconds spent before a
    # replay's first call. Checked in a fresh process; this one has configured them.
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})
    code = textwrap.dedent(
        f"""
        import asyncio, os
        from pathlib import Path
        from routewatch.clock import SystemClock, parse_instant
        from routewatch.project import load_project
        from routewatch.runner import execute, plan_runs
        from routewatch.store.migrate import open_database
        from routewatch.store.tables import RunRow

        env, clock = dict(os.environ), SystemClock()
        project = load_project(Path({str(config)!r}), env)
        engine = open_database(project.config.database_url)
        # The first run stores the eval set; the second finds it by its file's digest.
        for at in ("2026-11-20T06:00:00Z", "2026-11-21T06:00:00Z"):
            plans = plan_runs(project.config, routes=[], at=parse_instant(at), now=clock.now())
            (report,) = asyncio.run(execute(project, engine, plans, env=env, clock=clock))
            print(report.outcome.value, report.summary.results_total, RunRow.__mapper__.configured)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.split("\n")[:2] == [f"started {ITEMS} False", f"started {ITEMS} False"]


def test_the_heartbeat_never_stalls_the_routes_calls(
    tmp_path: Path, sim: str, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's heartbeat goes to the database while calls are in flight; a slow
    statement (a distant PostgreSQL, a SQLite file being written) must not be added to
    their latency. Here every heartbeat takes DB_DELAY_S and comes due every 50 ms,
    while two 150 ms calls at a time are in flight."""
    db_delay_s = 0.5
    monkeypatch.setattr(runner, "HEARTBEAT_EVERY_S", 0.05)
    config = write_project(
        tmp_path,
        sim,
        {"r": {"model": "slow", "samples": 2}},
        database_url=db_url,
        provider={"max_concurrency": 2},
    )
    # The heartbeat and the batches send the same UPDATE; only the heartbeat's is slowed.
    report, beats = replay_with_slow_statements(
        config,
        AT,
        lambda _: any(frame.name == "touch_run" for frame in traceback.extract_stack()),
        db_delay_s,
    )

    assert report.summary is not None
    assert report.summary.results_total == ITEMS * 2
    assert beats, "no heartbeat was sent: the test proves nothing"
    latencies = sorted(r["latency_ms"] for r in rows(db_url, "results"))
    # A heartbeat on the event loop would add up to the whole delay to the calls in
    # flight; the median, because the simulator runs in this process.
    assert latencies[len(latencies) // 2] < 150 + db_delay_s * 1000 / 2, latencies


def test_a_run_that_mostly_fails_is_erroring_and_fails_a_regression_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With half its calls or more failed, a run's route is ``erroring``, as ``status``
    says; ``--fail-on-regression`` exits 3 on it. A simulator of its own, one call at a
    time, so its seeded fault draws are this test's alone."""
    scenario = parse_scenario(
        {"seed": 1, "defaults": {"latency_ms": {"fixed": 2}}, "models": FLAKY_MODELS}
    )
    with serve_in_thread(create_app(scenario, {})) as url:
        config = write_project(
            tmp_path,
            url,
            {"r": {"model": "flaky"}},
            provider={"max_concurrency": 1, "max_retries": 0},
        )
        code = run(["run", "-c", str(config), "--at", AT, "--fail-on-regression"])

    (stored,) = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")
    failed = round(stored["error_rate"] * ITEMS)
    assert ITEMS / 2 <= failed < ITEMS, "the seed must fail half the calls or more, not all"
    assert code == 3
    out, err = capsys.readouterr()
    assert out.splitlines()[1].endswith("erroring")
    assert f"{failed} of {ITEMS} calls failed ({failed} server_error): " in err


def test_a_judge_that_cannot_be_reached_is_named_as_such(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Canaries without a verdict make the run judge suspect, for a reason other than a
    verdict that moved: the message says which."""
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})
    settings = yaml.safe_load(config.read_text())
    settings["providers"]["down"] = {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}
    settings["judges"]["default"]["provider"] = "down"
    config.write_text(yaml.safe_dump(settings))

    assert run(["run", "-c", str(config), "--at", AT]) == 0

    err = capsys.readouterr().err
    assert "judge suspect: the judge gave no verdict on any canary" in err
    assert "connection" in err
    assert "verdicts moved" not in err


def dry_run(
    config: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[list[list[str]], str]:
    """``run --dry-run``'s table rows, split on blanks, and its stderr; asserts it exits 0."""
    capsys.readouterr()
    assert run(["run", "-c", str(config), "--dry-run", *args]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "dry run: nothing is called, written or sent"
    return [line.split() for line in lines[2:] if line.startswith("r ")], err


def test_a_dry_run_of_a_new_project_plans_new_runs_and_creates_nothing(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RW_DRY_KEY", raising=False)
    config = write_project(
        tmp_path,
        sim,
        {"r": {"model": "perfect", "samples": 2}},
        provider={"api_key_env": "RW_DRY_KEY"},
    )

    (row,), err = dry_run(config, capsys, "--at", AT)

    assert row[2:] == ["2026-11-20", "06:00:00", "new", "run", str(ITEMS * 2), "default", "-"]
    assert not (tmp_path / "rw.db").exists(), "no database was created"
    assert "warning: RW_DRY_KEY is not set: every call to provider sim will fail" in err


def test_a_dry_run_skips_a_completed_slot_and_prices_a_new_one(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    price = {"input_per_mtok": 3_000.0, "output_per_mtok": 15_000.0}
    _, runs, results = run_route(tmp_path, sim, model="perfect", price=price)
    config = tmp_path / "routewatch.yaml"
    before = (len(runs), len(results))

    (done,), _ = dry_run(config, capsys, "--at", AT)
    (new,), _ = dry_run(config, capsys, "--at", "2026-11-21T06:00:00Z")

    assert done[4:9] == ["nothing:", "completed", "as", "run", str(runs[0]["id"])]
    assert done[9:] == ["0", "default", "-"]
    assert new[4:7] == ["new", "run", str(ITEMS)]
    per_call = runs[0]["cost_usd"] / runs[0]["results_total"]
    assert per_call > 0
    assert new[-1] == f"${per_call * ITEMS:.4f}"
    db = f"sqlite:///{tmp_path / 'rw.db'}"
    assert (len(rows(db, "runs")), len(rows(db, "results"))) == before


def test_a_dry_run_with_fail_on_regression_previews_and_exits_0(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI job may preview with the flags of its real runs."""
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})

    assert run(["run", "-c", str(config), "--dry-run", "--fail-on-regression"]) == 0
    assert "new run" in capsys.readouterr().out


def test_a_dry_run_names_a_judge_only_where_the_runner_would_judge(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The runner judges an eval set with criteria (with its judge, else ``default``)."""
    items = [{"id": "q1", "input": "Hi?", "reference": "Hello", "checks": [{"contains": "H"}]}]
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, items=items)
    capsys.readouterr()

    assert run(["run", "-c", str(config), "--dry-run"]) == 0

    out = capsys.readouterr().out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("r ")]
    assert row[-2:] == ["-", "-"], "no criteria: no judge"
    assert "1 call(s) in all\n" in out
    # Criteria without a `judge:` key: the runner judges with `default`.
    bench = tmp_path / "evals" / "bench.yaml"
    bench.write_text(yaml.safe_dump({"criteria": {"correct": "Is it right?"}, "items": items}))
    assert run(["run", "-c", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("r ")]
    assert row[-2:] == ["default", "-"]
    assert "1 call(s) in all, and the judge's on them" in out


def test_a_dry_run_changes_no_byte_of_the_database_file(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not even the journal mode, which every other connection switches to WAL."""
    run_route(tmp_path, sim, model="perfect")
    config, db = tmp_path / "routewatch.yaml", tmp_path / "rw.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    before = db.read_bytes()

    (done,), _ = dry_run(config, capsys, "--at", AT)

    assert done[4:6] == ["nothing:", "completed"]
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.glob("rw.db*")) == ["rw.db"]
    db.write_bytes(b"")  # an empty file, as `touch` leaves it
    (new,), _ = dry_run(config, capsys, "--at", AT)
    assert new[4:6] == ["new", "run"]
    assert db.read_bytes() == b""


def test_a_dry_run_reads_an_older_schema_and_refuses_an_unknown_one(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_route(tmp_path, sim, model="perfect")
    config, db = tmp_path / "routewatch.yaml", tmp_path / "rw.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0008'")
    capsys.readouterr()

    assert run(["run", "-c", str(config), "--dry-run", "--at", AT]) == 0

    out = capsys.readouterr().out
    assert "nothing: completed as run 1" in out, "an older schema's runs are read"
    assert f"the database is at schema 0008, not {SCHEMA_HEAD}: the next run upgrades" in out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    assert run(["run", "-c", str(config), "--dry-run"]) != 0
    assert "is at schema revision 0099, which this version of routewatch" in (
        capsys.readouterr().err
    )


def test_a_dry_run_leaves_a_wal_file_unmerged(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process that died with changes in the WAL: closing the last connection would
    checkpoint them into the file; a read-only one must not."""
    run_route(tmp_path, sim, model="perfect")
    config, db = tmp_path / "routewatch.yaml", tmp_path / "rw.db"
    writer = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "c.execute(\"UPDATE runs SET error_message = 'left in the WAL'\")\n"
        "c.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    before = db.read_bytes()

    (done,), _ = dry_run(config, capsys, "--at", AT)

    assert done[4:6] == ["nothing:", "completed"], "the WAL's changes are read"
    assert db.read_bytes() == before


@pytest.mark.postgres
def test_a_dry_run_reads_the_schema_its_url_names(
    tmp_path: Path,
    sim: str,
    pg_url: str,
    pg_admin_engine: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The URL's own `options` (a search_path here) hold for the read-only connection."""
    with pg_admin_engine.connect() as conn:
        conn.exec_driver_sql("CREATE SCHEMA rw_dry")
    try:
        url = make_url(pg_url).update_query_dict({"options": "-csearch_path=rw_dry"})
        run_route(tmp_path, sim, url=url.render_as_string(hide_password=False), model="perfect")

        (done,), _ = dry_run(tmp_path / "routewatch.yaml", capsys, "--at", AT)

        assert done[4:6] == ["nothing:", "completed"]
    finally:
        with pg_admin_engine.connect() as conn:
            conn.exec_driver_sql("DROP SCHEMA rw_dry CASCADE")


def test_a_dry_run_prices_no_call_from_a_run_whose_every_call_failed(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    price = {"input_per_mtok": 3_000.0, "output_per_mtok": 15_000.0}
    run_route(tmp_path, sim, model="failing", price=price)

    (new,), _ = dry_run(tmp_path / "routewatch.yaml", capsys, "--at", "2026-11-21T06:00:00Z")

    assert new[4:7] == ["new", "run", str(ITEMS)]
    assert new[-1] == "-", "no price was measured: not $0"
