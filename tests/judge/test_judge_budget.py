"""The daily judge budget: judging stops, the run is partially judged, one event a day."""

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from judge_runs import edit_yaml, run_at
from sqlalchemy import Engine

from routewatch.config import load_config
from routewatch.store.migrate import create_engine_for, upgrade
from routewatch.store.verdicts import add_judge_spend, raise_budget_event
from runner_project import faq_simulator, rows, write_project

PRICE = {"input_per_mtok": 10_000.0, "output_per_mtok": 10_000.0}
"""At this price the example eval set costs far more than its budget of $10 to judge."""
DAY = date(2026, 11, 1)
NOW = datetime(2026, 11, 1, 6, tzinfo=UTC)


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


def budget_project(root: Path, sim: str) -> Path:
    config = write_project(
        root,
        sim,
        {"r": {"model": "perfect"}},
        judge={"price": PRICE, "daily_budget_usd": 10.0},
    )
    alerts = {"webhooks": [{"url": "http://127.0.0.1:9/hook"}], "delivery": {"run_wait_s": 0}}
    edit_yaml(config, alerts=alerts)
    return config


def test_a_spent_budget_raises_one_judge_budget_event_a_day(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = budget_project(tmp_path, sim)
    run_at(config, 1)

    run_at(config, 2)

    db = f"sqlite:///{tmp_path / 'rw.db'}"
    assert [r["partially_judged"] for r in rows(db, "runs")] == [True, True]
    (event,) = [m for m in rows(db, "outbox") if m["event"] == "judge.budget"]
    (spend,) = rows(db, "judge_spend")
    assert event["target"] == load_config(config, {}).alerts.targets()[-1]
    assert event["payload"] | {"id": "-", "at": "-"} == {
        "event": "judge.budget",
        "id": "-",
        "at": "-",
        "route": None,
        "eval_set": None,
        "judge": "default",
        "day": spend["day"].isoformat(),
        "spent_usd": event["payload"]["spent_usd"],
        "budget_usd": 10.0,
    }
    assert 0 < event["payload"]["spent_usd"] <= 10.0
    assert spend["budget_alerted"]
    assert "partially judged" in capsys.readouterr().err


def test_the_event_is_raised_once_per_judge_and_day(engine: Engine) -> None:
    def raise_for(judge: str, day: date) -> bool:
        return raise_budget_event(
            engine,
            judge=judge,
            day=day,
            spent_usd=9.5,
            budget_usd=10.0,
            targets=["slack", "webhook:0"],
            now=NOW,
        )

    add_judge_spend(engine, judge="a", day=DAY, cost_usd=9.5, calls=3)

    assert [raise_for("a", DAY), raise_for("a", DAY)] == [True, False]
    assert [raise_for("b", DAY), raise_for("b", DAY)] == [True, False]
    assert raise_for("a", date(2026, 11, 2))


def test_a_day_flagged_before_any_spend_still_adds_the_spend(engine: Engine) -> None:
    """A budget too small for the first call leaves a row with no spend; spend adds to it."""
    raise_budget_event(
        engine, judge="a", day=DAY, spent_usd=0.0, budget_usd=0.0, targets=[], now=NOW
    )

    add_judge_spend(engine, judge="a", day=DAY, cost_usd=0.25, calls=1)

    with engine.connect() as conn:
        (row,) = conn.exec_driver_sql("SELECT cost_usd, calls, budget_alerted FROM judge_spend")
    assert tuple(row) == (0.25, 1, True)
