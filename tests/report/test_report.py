"""The weekly report from a real history: an incident, a policy change, hostile outputs."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from html import escape as html_escape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from browser import ARTIFACTS, ChromiumSession, check_in_chromium
from routewatch.cli import run
from routewatch.evalset import load_eval_set
from routewatch.judge.agreement import WeekAgreement, agreement
from routewatch.project import load_project
from routewatch.report.agreement import AgreementSection
from routewatch.report.data import (
    DetectorVerdict,
    Evidence,
    IncidentView,
    PolicyChange,
    ReportData,
    RunPoint,
    Section,
    Summary,
    days_window,
    load_report,
    previous_window,
    week_window,
)
from routewatch.report.render import (
    at_a_glance,
    change,
    detection_text,
    observed_text,
    render_report,
)
from routewatch.report.render import dollars as render_usd
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.agreement import AgreementTrend
from routewatch.store.migrate import open_database
from routewatch.store.tables import DetectionRow, IncidentRow, ResultRow, RunRow
from runner_project import SIM_SCENARIO, faq_simulator, write_project

PAYLOADS = [
    "<script>document.title='PWNED'</script>",
    "</textarea><img src=x onerror=\"document.title='PWNED'\">",
    "</pre><svg onload=\"document.title='PWNED'\"></svg>",
    '<style>body{display:none}</style><a href="javascript:alert(1)">x</a>',
    "{{ 7*7 }} ${7*7} &amp; &lt;",
]
ITEMS = [
    {
        "id": f"item-{i}",
        "input": f"Question {i}: {payload}",
        "reference": f"Answer {i}: {payload}",
        "checks": [{"contains": f"Answer {i}"}],
    }
    for i, payload in enumerate(PAYLOADS * 2)
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[ChromiumSession]:
    """One browser for the module's checks; each check still loads in a fresh context."""
    with ChromiumSession.start() as session:
        yield session


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """Seven days of two routes in a policy; the cheap one breaks on day 7.

    Shared by the module: reports only read the database, and each test writes its own
    file (or, once, the default one under ``reports/``).
    """
    tmp_path = tmp_path_factory.mktemp("history")
    (tmp_path / "sim").mkdir()
    evals = tmp_path / "sim" / "bench.yaml"
    evals.write_text(yaml.safe_dump({"name": "bench", "items": ITEMS}))
    app = create_app(parse_scenario(SIM_SCENARIO), {"bench": load_eval_set(evals)})
    with serve_in_thread(app) as sim:
        for model in ("cheap-m", "pro-m"):
            httpx.patch(f"{sim}/admin/models/{model}", json={"quality": 1.0}).raise_for_status()
        path = write_project(
            tmp_path,
            sim,
            {"cheap": {"model": "cheap-m"}, "pro": {"model": "pro-m"}},
            items=ITEMS,
        )
        config: dict[str, Any] = yaml.safe_load(path.read_text())
        config["policies"] = {"chat": {"chain": ["cheap", "pro"], "mode": "auto"}}
        config["reports"] = {"dir": "reports"}
        path.write_text(yaml.safe_dump(config))
        for day in range(1, 7):
            assert (
                run_in_a_thread(["run", "-c", str(path), "--at", f"2026-11-{day:02d}T06:00:00Z"])
                == 0
            )
        httpx.patch(f"{sim}/admin/models/cheap-m", json={"quality": 0.0}).raise_for_status()
        run_in_a_thread(["run", "-c", str(path), "--at", "2026-11-07T06:00:00Z"])
        yield path, sim


def run_in_a_thread(argv: list[str]) -> int:
    """``run(argv)`` in a thread of its own. Once the module's ``chromium`` is up,
    Playwright's sync API keeps an asyncio loop running in this thread, where
    ``routewatch run``'s ``asyncio.run`` would fail; which fixture comes first depends
    on the test that a pytest-xdist worker happens to start the module with."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run, argv).result()


def test_the_report_fits_a_phone_screen_and_landscape_paper(
    history: tuple[Path, str], tmp_path: Path, chromium: ChromiumSession
) -> None:
    """On a phone the tables scroll in their own boxes, not the page; printed (A4
    landscape, 273 mm = 1032 px printable) every column of every table shows."""
    config, _ = history
    out = tmp_path / "week.html"
    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0

    page, _ = chromium.overflow(out, width=420)
    printed = chromium.overflow(out, width=1032, media="print")

    assert page == 0
    assert printed == (0, 0)
    # The period's mean beside the last run's score, where a late drop shows undiluted.
    assert "<th>last run</th>" in out.read_text()
    # Timeline labels name the eval set: two incidents of one route read apart.
    assert re.search(r"#\d+ \S+ · \S+ · score", out.read_text())
    assert "Incidents and policy changes, 2026-11-02 to 2026-11-08" in out.read_text()
    assert "@page { size: A4 landscape" in out.read_text()


def test_the_report_shows_the_week_its_incident_and_policy_change_all_escaped(
    history: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    chromium: ChromiumSession,
) -> None:
    config, _ = history
    out = tmp_path / "week.html"

    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0

    assert str(out) in capsys.readouterr().out
    html = out.read_text()
    assert "<script" not in html.lower()
    assert "<img" not in html
    assert "<svg onload" not in html
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;" in html
    assert "Content-Security-Policy" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "incident" in html.lower()
    assert "demoted cheap" in html
    # The policy change and the degraded row link to the incident's card, which exists.
    targets = set(re.findall(r'href="#(incident-\d+)"', html))
    assert targets
    assert targets <= set(re.findall(r'id="(incident-\d+)"', html))
    assert "chat" in html
    assert "Judge agreement" not in html, "no eval set is judged: no section, no note"

    checked = check_in_chromium(out, screenshot=ARTIFACTS / "report.png", session=chromium)

    assert not checked.script_ran, checked.summary()
    assert checked.requests == [], "the page fetched nothing"
    assert checked.script_markup == []
    assert checked.title.startswith("routewatch · 2026-W45")
    assert "<script>document.title='PWNED'</script>" in checked.text, "shown as text"
    assert checked.screenshot.stat().st_size > 10_000


def test_an_empty_week_and_a_bad_week_are_handled(
    history: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = history
    empty = tmp_path / "empty.html"

    assert run(["report", "-c", str(config), "--week", "2025-W01", "-o", str(empty)]) == 0
    assert run(["report", "-c", str(config), "--week", "2026-47"]) == 1
    assert "ISO week" in capsys.readouterr().err
    assert "No run completed in this period." in empty.read_text()


@pytest.mark.parametrize(
    "period",
    [
        ["--week", "0001-W01"],
        ["--week", "9999-W52"],
        ["--since", "0001-01-01", "--until", "0001-01-03"],
        ["--until", "0001-01-03"],
        ["--week", "1970-W10"],
    ],
)
def test_a_period_out_of_range_is_a_usage_error_not_a_traceback(
    history: tuple[Path, str], capsys: pytest.CaptureFixture[str], period: list[str]
) -> None:
    config, _ = history

    assert run(["report", "-c", str(config), *period]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: the period ")
    assert "is out of range: give a date from 1971 on" in err
    assert "Traceback" not in err


def test_the_default_report_goes_to_reports_dir_named_by_week(
    history: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = history

    assert run(["report", "-c", str(config), "--since", "2026-11-01", "--until", "2026-11-07"]) == 0

    written = config.parent / "reports" / "routewatch-2026-11-01_2026-11-07.html"
    assert written.exists()
    assert json.dumps(str(written))[1:-1] in capsys.readouterr().out


def synthetic(payload: str) -> ReportData:
    """A report whose every text field carries ``payload``."""
    at = datetime(2026, 11, 18, 6, tzinfo=UTC)
    window = week_window("2026-W47", "UTC")
    point = RunPoint(
        run_id=1,
        at=at,
        status="completed",
        score=0.5,
        pass_rate=0.5,
        error_rate=0.0,
        p50_latency_ms=100.0,
        p95_latency_ms=200.0,
        tokens_in=10,
        tokens_out=10,
        cost_usd=0.01,
        requests=10,
        judge_calls=1,
        judge_saved=1,
        judge_cost_usd=0.001,
        mean=0.8,
        sd=0.05,
        lower_limit=0.7,
        state="degraded",
        in_window=True,
    )
    data = load_summary_free(point)
    evidence = Evidence(
        item_id=payload,
        baseline=1.0,
        today=0.0,
        input=payload,
        reference=payload,
        output=payload,
        before_output=payload,
        before_run_id=0,
        reasoning=((payload, 0.2, payload),),
        failed_checks=((payload, payload),),
    )
    incident = IncidentView(
        id=1,
        route=payload,
        eval_set=payload,
        metric=payload,
        detector=payload,
        status="open",
        opened_at=at,
        resolved_at=None,
        observed=0.5,
        baseline_mean=0.8,
        threshold=0.01,
        p_value=1e-6,
        opening_run_id=1,
        evidence=(evidence,),
    )
    by_hand = dataclasses.replace(
        incident,
        id=2,
        status="resolved",
        resolved_at=at,
        resolved_by=payload,
        resolution_reason=payload,
        evidence=(),
    )
    change = PolicyChange(
        policy=payload,
        version=2,
        at=at,
        chain=(payload,),
        demoted=(payload,),
        actor=payload,
        reason=payload,
        incident_id=1,
    )
    section = Section(
        route=payload, eval_set=payload, model=payload, points=(point,), summary=data, previous=data
    )
    pairs = [(5, 5), (1, 2), (4, 4), (2, 1)] * 3
    trend = AgreementTrend(
        judge=payload,
        eval_set=payload,
        criterion=payload,
        scale=(1, 5),
        pass_threshold=0.7,
        weeks=tuple(
            WeekAgreement(week=week, agreement=agreement(p, scale=(1, 5), pass_threshold=0.7))
            for week, p in ((payload, pairs[:3]), ("2026-W47", pairs))
        ),
    )
    return ReportData(
        window=window,
        generated_at=at,
        timezone="UTC",
        sections=(section,),
        previous_window=previous_window(window),
        incidents=(incident, by_hand),
        policy_changes=(change,),
        notes=(payload,),
        agreement=AgreementSection(weeks=(payload, "2026-W47"), trends=(trend,)),
    )


def load_summary_free(point: RunPoint) -> Summary:
    return Summary(
        runs=1,
        score=point.score,
        pass_rate=point.pass_rate,
        error_rate=point.error_rate,
        p50_latency_ms=point.p50_latency_ms,
        p95_latency_ms=point.p95_latency_ms,
        tokens_per_run=20.0,
        cost_per_run=0.01,
        cost_per_1k_requests=1.0,
        usd_per_mtok=500.0,
        judge_calls=1,
        judge_saved=1,
        judge_cost_usd=0.001,
        baseline_mean=0.8,
        lower_limit=0.7,
    )


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_every_field_of_the_report_is_escaped(
    payload: str, tmp_path: Path, chromium: ChromiumSession
) -> None:
    page = tmp_path / "hostile.html"

    page.write_text(render_report(synthetic(payload)))

    html = page.read_text()
    assert payload not in html or payload == html_escape(payload)
    assert "{{" not in html or payload.startswith("{{"), "no template left unrendered"
    assert "n 3: not enough pairs" in html
    assert "n 12</span>" in html
    checked = check_in_chromium(
        page, screenshot=ARTIFACTS / f"hostile-{PAYLOADS.index(payload)}.png", session=chromium
    )
    assert not checked.script_ran, checked.summary()
    assert checked.requests == []
    assert checked.script_markup == []
    assert payload.split("<")[0] in checked.text


def test_bidi_overrides_and_control_characters_are_shown_not_obeyed(
    tmp_path: Path, chromium: ChromiumSession
) -> None:
    """U+202E makes "gnp.exe" read "exe.png": the evidence must read as the bytes were."""
    page = tmp_path / "bidi.html"
    payload = "\u202egnp.exe\u202c and \x1b[31mred\x07"

    page.write_text(render_report(synthetic(payload)))

    html = page.read_text()
    assert not {"\u202e", "\u202c", "\x1b", "\x07"} & set(html)
    assert "\\u202egnp.exe\\u202c and \\u001b[31mred\\u0007" in html
    checked = check_in_chromium(page, screenshot=ARTIFACTS / "bidi.png", session=chromium)
    assert "\\u202egnp.exe" in checked.text


def test_a_last_run_whose_calls_mostly_failed_is_erroring_and_names_its_error_rate_incident(
    tmp_path: Path,
) -> None:
    """As `status` says it; the report called it degraded (or healthy) and named the
    route's oldest open incident, not the one paging now."""
    from types import SimpleNamespace

    from routewatch.report import data as report_data

    failing = SimpleNamespace(status="completed", error_rate=0.9, judge_suspect=False)
    detection = SimpleNamespace(known=True, in_incident=False)
    assert report_data._state(failing, detection) == "erroring"
    assert (
        report_data._state(SimpleNamespace(**{**vars(failing), "error_rate": 0.1}), detection)
        == "healthy"
    )

    base = synthetic("r")
    [section] = base.sections
    [point] = section.points
    erroring = dataclasses.replace(
        section, points=(dataclasses.replace(point, state="erroring", error_rate=1.0),)
    )
    score, _ = base.incidents
    later = dataclasses.replace(
        score, id=4, metric="error_rate", opened_at=score.opened_at + timedelta(days=1)
    )
    data = dataclasses.replace(base, sections=(erroring,), incidents=(score, later))

    [line, *_] = at_a_glance(data)
    html = render_report(data)

    assert line.text.startswith("r · r: erroring; ")
    assert "open incident on error_rate since" in line.text
    assert line.incident_id == 4
    assert '<td class="text state erroring">erroring <a href="#incident-4">#4</a></td>' in html


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.000142, "$0.000142"),  # a cheap route's run: four decimals made it $0.0001
        (0.0202, "$0.0202"),
        (0.6928, "$0.693"),
        (2.226, "$2.23"),
        (0.0, "$0.00"),
        (None, "\u2013"),
    ],
)
def test_dollars_keep_three_significant_figures_below_one(value: float | None, shown: str) -> None:
    assert render_usd(value) == shown


def test_at_a_glance_names_the_broken_route_its_incident_and_the_demotion(
    history: tuple[Path, str], tmp_path: Path
) -> None:
    """The period's mean dilutes a drop on its last day; the summary leads with it."""
    config, _ = history
    broken, before = tmp_path / "broken.html", tmp_path / "before.html"
    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(broken)]) == 0
    args = ["--since", "2026-11-01", "--until", "2026-11-06", "-o", str(before)]
    assert run(["report", "-c", str(config), *args]) == 0

    glance = re.findall(
        r"<li>(.*?)</li>", broken.read_text().split("At a glance")[1].split("</ul>")[0]
    )

    assert glance[0].startswith("cheap · bench: degraded; last run 0.000 against a baseline")
    assert 'open incident on score since Nov 07 (<a href="#incident-' in glance[0]
    assert any(
        line.startswith("policy chat v2: demoted cheap; the chain is now pro") for line in glance
    )
    assert glance[-1] == "1 of 2 route · eval set pairs healthy at their last run"
    # Before the break only the healthy count: nothing else to lead with.
    calm = re.findall(
        r"<li>(.*?)</li>", before.read_text().split("At a glance")[1].split("</ul>")[0]
    )
    assert calm == ["2 of 2 route · eval set pairs healthy at their last run"]


@pytest.mark.parametrize(
    ("now", "before", "kind", "text", "tone"),
    [
        (0.91, 0.95, "score", "\u22120.040", "worse"),
        (0.95, 0.91, "score", "+0.040", "better"),
        (0.9502, 0.95, "score", "\u00b10", "same"),
        (0.90, 0.95, "pass", "\u22125.0 pt", "worse"),
        (0.02, 0.01, "errors", "+1.0 pt", "worse"),
        (0.0, 0.01, "errors", "\u22121.0 pt", "better"),
        (230.0, 200.0, "latency", "+15%", "worse"),
        (0.0009, 0.001, "cost", "\u221210%", "better"),
        (0.001, 0.001, "cost", "\u00b10", "same"),
    ],
)
def test_a_change_from_the_previous_period_says_which_way_is_worse(
    now: float, before: float, kind: str, text: str, tone: str
) -> None:
    moved = change(now, before, kind)

    assert moved is not None
    assert (moved.text, moved.tone) == (text, tone)


def test_no_change_is_shown_without_both_periods() -> None:
    assert change(None, 0.9, "score") is None
    assert change(0.9, None, "score") is None
    assert change(0.001, 0.0, "cost") is None, "no percentage of nothing"


def test_the_previous_period_is_as_long_and_ends_where_the_window_starts() -> None:
    week = week_window("2026-W45", "Europe/Berlin")  # Mon Nov 02; Oct 25 changed the clocks
    before = previous_window(week)
    assert before.end == week.start
    assert before.start.isoformat() == "2026-10-26T00:00:00+01:00"
    assert before.label == "2026-W44 (Oct 26 \u2013 Nov 01, 2026)"
    days = previous_window(days_window(date(2026, 11, 1), date(2026, 11, 30), "UTC"))
    assert (days.start.date(), days.end.date()) == (date(2026, 10, 2), date(2026, 11, 1))
    assert days.label == "Oct 02 \u2013 Oct 31, 2026"


def test_a_period_across_new_year_names_both_years() -> None:
    assert week_window("2026-W53", "UTC").label == "2026-W53 (Dec 28, 2026 \u2013 Jan 03, 2027)"
    after = week_window("2027-W01", "UTC")
    assert previous_window(after).label == "2026-W53 (Dec 28, 2026 \u2013 Jan 03, 2027)"


def test_until_alone_is_the_week_ending_on_it_and_a_future_period_is_refused(
    history: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = history
    out = tmp_path / "r.html"
    capsys.readouterr()

    assert run(["report", "-c", str(config), "--until", "2026-11-10", "-o", str(out)]) == 0
    assert "report for Nov 04, 2026 \u2013 Nov 10, 2026" in capsys.readouterr().out
    next_year = datetime.now(UTC).year + 1
    for args in (["--week", f"{next_year}-W10"], ["--since", f"{next_year}-01-01"]):
        assert run(["report", "-c", str(config), *args, "-o", str(tmp_path / "x.html")]) == 1
        err = capsys.readouterr().err
        assert "has not begun yet" in err or "is after today" in err, err
    assert not (tmp_path / "x.html").exists()


def test_the_routes_table_shows_each_figures_change_from_the_week_before(
    history: tuple[Path, str], tmp_path: Path
) -> None:
    """Week 45 against week 44, which holds the routes' first day only: the cheap route's
    score fell (its last day failed every item), the pro route's did not move."""
    config, _ = history
    out = tmp_path / "week.html"
    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0
    project = load_project(config, {})
    engine = open_database(project.config.database_url)
    data = load_report(engine, project.config, week_window("2026-W45", "UTC"))

    html = out.read_text()
    rows = {
        re.search(r'<td class="text">(\w+)</td>', row)[1]: row  # type: ignore[index]
        for row in html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    }
    sections = {s.route: s for s in data.sections}
    earlier = "2026-W44 (Oct 26 \u2013 Nov 01, 2026)"

    assert f"its change from the previous period, {earlier}" in html
    cheap, pro = sections["cheap"].previous, sections["pro"].previous
    assert cheap is not None
    assert pro is not None
    assert (cheap.runs, cheap.score, pro.runs, pro.score) == (1, 1.0, 1, 1.0)
    now = sections["cheap"].summary.score
    assert now is not None
    assert now < 1.0
    fell = f"{now - 1.0:+.3f}".replace("-", "\u2212")
    assert f'<span class="delta worse" title="{earlier}: 1.000">{fell}</span>' in rows["cheap"]
    assert f'<span class="delta same" title="{earlier}: 1.000">\u00b10</span>' in rows["pro"]
    # Score, pass, errors, p50, p95; no cost change, since these routes have no price.
    assert rows["pro"].count('class="delta') == 5
    assert "TTFT" not in html, "no route streams"
    # Latency is pooled over the previous period's calls, as the week's own p50 and p95.
    with engine.connect() as conn:
        calls = conn.execute(
            select(ResultRow.latency_ms)
            .join(RunRow, RunRow.id == ResultRow.run_id)
            .where(RunRow.route == "pro", RunRow.at < datetime(2026, 11, 2, tzinfo=UTC))
        ).scalars()
        median = statistics.median(calls)
    assert pro.p50_latency_ms == pytest.approx(median)


def test_a_period_with_nothing_before_it_shows_no_changes(
    history: tuple[Path, str], tmp_path: Path
) -> None:
    config, _ = history
    out = tmp_path / "first.html"
    assert run(["report", "-c", str(config), "--week", "2026-W44", "-o", str(out)]) == 0

    assert 'class="delta' not in out.read_text()


def test_an_incident_card_names_the_checks_each_item_failed(
    history: tuple[Path, str], tmp_path: Path
) -> None:
    config, _ = history
    out = tmp_path / "week.html"
    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0

    card = out.read_text().split('id="incident-')[1].split("</section>")[0]
    failed = re.findall(r"<li><strong>(.*?)</strong>: (.*?)</li>", card)

    assert len(failed) == card.count("<h4>") > 0, "every item shown failed its one check"
    for check, why in failed:
        assert check == "contains #1"
        assert re.fullmatch(r"missing &#39;Answer \d+&#39;", why), why


@pytest.mark.parametrize(
    ("detector", "p", "limit", "text"),
    [
        ("paired-count", 9.4e-08, 0.00014, "paired-count: p = 9.4e-08, under its limit of 0.00014"),
        ("error-rate", 0.001, None, "error-rate: p = 0.001"),
        ("critical-item", None, 2.0, "critical-item: the item failed in 2 runs in a row"),
        ("sigma", None, 0.6412, "sigma: below the lower limit of 0.641"),
        ("cusum", None, 4.1, "cusum (slow drift): over its limit of 4.10"),
        ("latency-p95", 0.002, 312.4, "latency-p95: past 312 ms, p = 0.002"),
        ("cost", 0.01, 0.00042, "cost: past $0.000420, p = 0.01"),
    ],
)
def test_each_detector_says_what_it_found_against_what_limit(
    detector: str, p: float | None, limit: float | None, text: str
) -> None:
    assert detection_text(DetectorVerdict(detector=detector, p_value=p, threshold=limit)) == text


def test_an_incident_resolved_by_hand_says_by_whom_and_why() -> None:
    html = render_report(synthetic("plain"))

    assert "resolved 2026-11-18 06:00 UTC by hand (plain): “plain”." in html
    assert "#2 plain · plain resolved by hand" in html


@pytest.mark.parametrize(
    ("metric", "observed", "baseline", "text"),
    [
        ("score", 0.333, 0.982, "Score 0.333 against a baseline of 0.982"),
        ("critical:refund-days", 0.0, None, "Critical item refund-days scored 0.000"),
        ("error_rate", 0.12, 0.01, "Error rate 12.0% against a baseline of 1.0%"),
        ("p95_latency_ms", 850.0, 300.0, "p95 latency 850 ms against a baseline of 300 ms"),
        ("cost_per_call_usd", 0.002, None, "Cost per call $0.00200"),
    ],
)
def test_an_incident_says_what_moved_in_words(
    metric: str, observed: float, baseline: float | None, text: str
) -> None:
    incident = IncidentView(
        id=1,
        route="r",
        eval_set="e",
        metric=metric,
        detector="sigma",
        status="open",
        opened_at=datetime(2026, 11, 18, tzinfo=UTC),
        resolved_at=None,
        observed=observed,
        baseline_mean=baseline,
        threshold=None,
        p_value=None,
        opening_run_id=1,
    )
    assert observed_text(incident) == text


def test_an_incident_card_names_every_detector_that_paged(
    history: tuple[Path, str], tmp_path: Path
) -> None:
    config, _ = history
    out = tmp_path / "week.html"
    assert run(["report", "-c", str(config), "--week", "2026-W45", "-o", str(out)]) == 0
    engine = open_database(load_project(config, {}).config.database_url)
    with engine.connect() as conn:
        incident = conn.execute(
            select(IncidentRow.__table__).where(IncidentRow.metric == "score")
        ).one()
        findings = conn.execute(
            select(DetectionRow.findings).where(DetectionRow.run_id == incident.opening_run_id)
        ).scalar_one()
    paged = [f["detector"] for f in findings if f["paged"] and f["metric"] == "score"]

    card = out.read_text().split(f'id="incident-{incident.id}"')[1].split("<h4>")[0]
    said = re.search(r"Paged by (.*?)\.</div>", card, re.S)

    assert len(paged) >= 2, "the fixture's break is caught by more than one test"
    assert said is not None
    verdicts = said[1].split("; ")
    assert [v.split(":")[0] for v in verdicts] == [incident.detector] + [
        d for d in paged if d != incident.detector
    ]
    limit = f"under its limit of {incident.threshold:.2g}"
    assert verdicts[0] == f"{incident.detector}: p = {incident.p_value:.2g}, {limit}"
    assert (
        f"Score {incident.observed:.3f} against a baseline of {incident.baseline_mean:.3f}." in card
    )


def test_a_streamed_route_shows_its_time_to_first_token(tmp_path: Path) -> None:
    (tmp_path / "sim").mkdir()
    routes: dict[str, dict[str, Any]] = {
        "streamed": {"model": "slow", "stream": True},
        "plain": {"model": "perfect"},
    }
    with faq_simulator(tmp_path / "sim") as sim:
        config = write_project(tmp_path, sim, routes)
        for day in (16, 17):
            argv = ["run", "-c", str(config), "--at", f"2026-11-{day}T06:00:00Z"]
            assert run_in_a_thread(argv) == 0
    out = tmp_path / "week.html"

    assert run(["report", "-c", str(config), "--week", "2026-W47", "-o", str(out)]) == 0

    html = out.read_text()
    engine = open_database(f"sqlite:///{tmp_path / 'rw.db'}")
    with engine.connect() as conn:
        query = select(ResultRow.ttft_ms).where(ResultRow.ttft_ms.is_not(None))
        ttfts = [t for t in conn.execute(query).scalars() if t is not None]
    engine.dispose()
    assert len(ttfts) == 12, "both days' calls of the streamed route, pooled"
    header = html.split("<tbody>")[0].rsplit("<thead>", 1)[1]
    assert "<th>p95 ms</th><th title=" in header
    assert ">TTFT p50 ms</th><th>tokens / run</th>" in header
    rows = {
        re.search(r'<td class="text">(\w+)</td>', row)[1]: re.findall(r"<td>([^<]*)", row)  # type: ignore[index]
        for row in html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    }
    # runs, score, baseline, threshold, pass, errors, p50, p95, then TTFT p50
    assert rows["streamed"][8] == f"{statistics.median(ttfts):,.0f}"
    assert rows["plain"][8] == "\u2013"
