"""The report's judge agreement over time: weeks, counts from the stored rows, the page."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy.stats import spearmanr

from browser import ARTIFACTS, check_in_chromium
from routewatch.cli import run
from routewatch.evalset import load_eval_set
from routewatch.judge.agreement import iso_week
from routewatch.project import load_project
from routewatch.report.agreement import AGREEMENT_WEEKS, agreement_weeks
from routewatch.report.data import days_window, load_report, week_window
from routewatch.scaffold import EVAL_TEMPLATE, template_text
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.migrate import open_database
from runner_project import SIM_MODELS, SIM_SCENARIO, rows, write_project

HUMAN = {
    "refund-window": 5,
    "reset-password": 4,
    "order-status-json": 2,
    "support-hours": 1,
    "cancel-subscription": 5,
}
ROUTES = {"good": {"model": "perfect"}, "mixed": {"model": "mixed"}}
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04")
"""A Sunday (2026-W44), then three days of 2026-W45: the good route's verdicts are reused."""


def test_weeks_are_the_iso_weeks_ending_with_the_window_in_its_time_zone() -> None:
    window = week_window("2026-W47", "Europe/Berlin")

    weeks = agreement_weeks(window.end, "Europe/Berlin")

    assert [w.label for w in weeks] == [f"2026-W{n}" for n in range(40, 48)]
    assert weeks[0].start == datetime(2026, 9, 28, tzinfo=window.start.tzinfo)
    assert weeks[-1].end == window.end
    assert all(a.end == b.start for a, b in pairwise(weeks))


def test_a_window_ending_mid_week_cuts_the_last_week_there() -> None:
    window = days_window(date(2026, 11, 1), date(2026, 11, 4), "UTC")

    weeks = agreement_weeks(window.end, "UTC", count=2)

    assert [(w.label, w.start.day, w.end.day) for w in weeks] == [
        ("2026-W44", 26, 2),
        ("2026-W45", 2, 5),
    ]


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("sim") / EVAL_TEMPLATE
    path.write_text(template_text(EVAL_TEMPLATE))
    scenario = {**SIM_SCENARIO, "models": {**SIM_MODELS, "mixed": {"quality": 0.5}}}
    app = create_app(parse_scenario(scenario), {"support-faq": load_eval_set(path)})
    with serve_in_thread(app) as url:
        yield url


def labelled_history(root: Path, sim: str, labels: dict[str, int], db: str | None = None) -> Path:
    """The example eval set labelled with ``labels``, run by both routes on ``DAYS``."""
    config = write_project(root, sim, ROUTES, database_url=db)
    evalset = yaml.safe_load(template_text(EVAL_TEMPLATE))
    for item in evalset["items"]:
        item.pop("human_score", None)
        if item["id"] in labels:
            item["human_score"] = labels[item["id"]]
    (root / "evals" / EVAL_TEMPLATE).write_text(yaml.safe_dump(evalset))
    for day in DAYS:
        assert run(["run", "-c", str(config), "--at", f"{day}T06:00:00Z"]) == 0
    return config


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def decisions_by_week(db: str, criterion: str) -> dict[str, list[tuple[float, float]]]:
    """(human, judge) per ISO week, once per distinct (item, verdict), from the tables."""
    weeks = {r["id"]: iso_week(aware(r["at"]), "UTC") for r in rows(db, "runs")}
    results = {
        r["id"]: (weeks[r["run_id"]], r["item_id"])
        for r in rows(db, "results")
        if r["sample"] == 0 and r["item_id"] in HUMAN
    }
    grades = {v["id"]: v["raw_score"] for v in rows(db, "judge_verdicts")}
    seen = {
        (*results[s["result_id"]], s["judge_verdict_id"])
        for s in rows(db, "scores")
        if s["result_id"] in results and s["scorer"] == f"judge:{criterion}"
    }
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for week, item, verdict_id in sorted(seen):
        found[week].append((HUMAN[item], grades[verdict_id]))
    return found


def kappa_by_hand(pairs: list[tuple[float, float]], threshold: float = 0.7) -> float:
    passed = [((h - 1) / 4 >= threshold, (j - 1) / 4 >= threshold) for h, j in pairs]
    n = len(passed)
    observed = sum(h == j for h, j in passed) / n
    human = sum(h for h, _ in passed) / n
    judge = sum(j for _, j in passed) / n
    expected = human * judge + (1 - human) * (1 - judge)
    return (observed - expected) / (1 - expected)


def report_data(config: Path, week: str = "2026-W45") -> Any:
    project = load_project(config, dict(os.environ))
    engine = open_database(project.config.database_url)
    try:
        return load_report(engine, project.config, week_window(week, "UTC"))
    finally:
        engine.dispose()


def test_weekly_agreement_matches_the_stored_rows(tmp_path: Path, sim: str, db_url: str) -> None:
    """Each week counts each (item, verdict) once: across runs and across routes."""
    config = labelled_history(tmp_path, sim, HUMAN, db_url)
    expected = decisions_by_week(db_url, "correctness")

    section = report_data(config).agreement

    trend = next(t for t in section.trends if t.criterion == "correctness")
    assert (trend.judge, trend.eval_set) == ("default", "support-faq")
    # From the first judged week on: the six weeks before the first run are not shown.
    assert section.weeks == ("2026-W44", "2026-W45")
    assert [w.agreement.n for w in trend.weeks] == [
        len(expected["2026-W44"]),
        len(expected["2026-W45"]),
    ]
    # Weeks without a run after the first judged one are shown, as weeks without pairs.
    later = report_data(config, "2026-W47").agreement
    assert later.weeks == ("2026-W44", "2026-W45", "2026-W46", "2026-W47")
    assert [w.agreement.n for w in later.trends[0].weeks][2:] == [0, 0]
    pairs = expected["2026-W45"]
    assert len(pairs) < 3 * len(ROUTES) * len(HUMAN), "reused verdicts count once"
    week = trend.weeks[-1].agreement
    assert week.kappa.value == pytest.approx(kappa_by_hand(pairs))
    rho = spearmanr([h for h, _ in pairs], [j for _, j in pairs]).statistic
    assert week.spearman.value == pytest.approx(rho)


def test_the_page_shows_each_week_with_honest_cells_and_runs_no_script(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_history(tmp_path, sim, HUMAN)
    out = tmp_path / "week.html"
    section = report_data(config).agreement
    shown = section.trends[0].weeks[-1].agreement

    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0

    html = out.read_text()
    assert "Judge agreement with people" in html
    assert "judge default · support-faq" in html
    assert "no pairs</td>" not in html, "no empty weeks before the first judged one"
    assert len(section.weeks) == 2
    cell = f"n {shown.n}" if shown.n >= 10 else f"n {shown.n}: not enough pairs"
    assert cell in html
    assert 'aria-label="default · support-faq"' in html
    checked = check_in_chromium(out, screenshot=ARTIFACTS / "report-agreement.png")
    assert not checked.script_ran, checked.summary()
    assert checked.requests == []
    assert "Judge agreement with people" in checked.text


def test_without_human_scores_the_section_is_one_note(tmp_path: Path, sim: str) -> None:
    config = labelled_history(tmp_path, sim, {})

    section = report_data(config).agreement

    assert section.trends == ()
    assert section.note == (
        "Judge agreement not shown: no item of the judged eval sets (support-faq) "
        "carries a `human_score`."
    )
    assert len(section.weeks) == AGREEMENT_WEEKS
