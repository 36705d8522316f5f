import json
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routewatch.alerts.webhook import send_webhook
from routewatch.checks import run_checks
from routewatch.cli import run
from routewatch.clock import FixedClock
from routewatch.config import load_config
from routewatch.demo import (
    DEGRADED_ROUTE,
    SCENARIO_TEMPLATE,
    SECOND_EVAL_TEMPLATE,
    DemoResult,
    run_demo,
    webhook_receiver,
    write_demo_project,
)
from routewatch.errors import UsageError
from routewatch.evalset import load_eval_set
from routewatch.scaffold import CONFIG_TEMPLATE, template_text, write_project
from routewatch.store.runs import ClaimOutcome

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAYS = 21
ROUTES = ("chat-flash", "chat-pro", "chat-premium")
EVAL_SETS = ("support-faq", "refund-policy")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """Three weeks ending ``NOW``: the cheap route breaks for the last four days."""
    folder = tmp_path_factory.mktemp("demo")
    before = set(threading.enumerate())
    result = run_demo(folder, env={}, clock=FixedClock(NOW), days=DAYS)
    # Threads the demo started and left running (other test modules may run servers).
    LEFT_RUNNING[:] = [t.name for t in set(threading.enumerate()) - before]
    return result


LEFT_RUNNING: list[str] = []


def _again(
    demo: DemoResult,
    folder: Path,
    now: datetime,
    on_day: Callable[[datetime, bool, bool], None] | None = None,
) -> DemoResult:
    shutil.copytree(demo.config_path.parent, folder)
    return run_demo(folder, env={}, clock=FixedClock(now), days=DAYS, on_day=on_day)


def test_demo_replays_both_eval_sets_on_every_route_each_day(demo: DemoResult) -> None:
    pairs = {(r.route, r.eval_set) for r in demo.reports}

    assert pairs == {(route, name) for route in ROUTES for name in EVAL_SETS}
    assert len(demo.reports) == DAYS * len(pairs)
    assert {r.outcome for r in demo.reports} == {ClaimOutcome.started}
    assert demo.reports[-1].at == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def test_demo_config_on_disk_lists_both_eval_sets(demo: DemoResult) -> None:
    config = load_config(demo.config_path, {})

    assert {tuple(r.evals) for r in config.routes.values()} == {EVAL_SETS}
    assert config.alerts.webhooks == []


def test_the_broken_cheap_route_opens_an_incident_in_its_last_days(demo: DemoResult) -> None:
    assert demo.degradation is not None
    since = demo.degradation.since

    flash = [o for o in demo.opened if o.route == DEGRADED_ROUTE and o.at.date() >= since]

    assert since == NOW.date() - timedelta(days=3)
    assert flash
    assert all(o.findings for o in flash)


def test_the_local_receiver_gets_signed_incident_and_policy_events(demo: DemoResult) -> None:
    events = [d.event for d in demo.deliveries]

    assert "incident.opened" in events
    assert "policy.changed" in events
    assert all(d.verified for d in demo.deliveries)
    assert len({d.delivery_id for d in demo.deliveries}) == len(demo.deliveries)


def test_the_policy_file_no_longer_starts_with_the_cheap_route(demo: DemoResult) -> None:
    published = json.loads((demo.config_path.parent / "policy" / "chat.json").read_text())

    assert published["chain"][0] != DEGRADED_ROUTE
    assert DEGRADED_ROUTE in {d["route"] for d in published["demoted"]}


def test_the_report_covers_the_last_week(demo: DemoResult) -> None:
    assert demo.report_path is not None

    assert demo.report_path.name == "routewatch-2026-11-17_2026-11-23.html"
    assert DEGRADED_ROUTE in demo.report_path.read_text(encoding="utf-8")


def test_the_demo_stops_the_servers_it_started(demo: DemoResult) -> None:
    assert not set(LEFT_RUNNING) & {"routewatch-serve", "routewatch-demo-webhook"}


def test_a_second_demo_on_the_same_day_replays_nothing(demo: DemoResult, tmp_path: Path) -> None:
    days: list[tuple[datetime, bool, bool]] = []
    again = _again(demo, tmp_path / "again", NOW, lambda *day: days.append(day))

    assert len(days) == DAYS
    assert not any(replayed for _, _, replayed in days)  # each day told as already done

    assert {r.outcome for r in again.reports} == {ClaimOutcome.completed}
    assert again.opened == []
    assert again.deliveries == []


def test_a_demo_the_next_day_replays_that_day_still_broken(
    demo: DemoResult, tmp_path: Path
) -> None:
    days: list[tuple[datetime, bool, bool]] = []
    again = _again(demo, tmp_path / "next", NOW + timedelta(days=1), lambda *d: days.append(d))

    assert [(at.date(), broken) for at, broken, replayed in days if replayed] == [
        (NOW.date() + timedelta(days=1), True)
    ]

    new = [r for r in again.reports if r.outcome is ClaimOutcome.started]
    assert {r.at.date() for r in new} == {NOW.date() + timedelta(days=1)}
    assert again.status is not None
    states = {r.route: r.state.value for r in again.status.routes}
    assert states[DEGRADED_ROUTE] == "degraded"
    assert "policy.changed" not in {d.event for d in again.deliveries}


def test_the_receiver_tells_a_bad_signature_from_a_good_one() -> None:
    with webhook_receiver("right") as (url, deliveries):
        for secret in ("right", "wrong"):
            sent = send_webhook(
                url, {"event": "test"}, delivery_id=secret, secret=secret, timeout_s=5
            )
            assert sent.ok

    assert [(d.delivery_id, d.verified) for d in deliveries] == [("right", True), ("wrong", False)]


def test_every_refund_policy_reference_passes_its_own_checks(tmp_path: Path) -> None:
    (tmp_path / SECOND_EVAL_TEMPLATE).write_text(template_text(SECOND_EVAL_TEMPLATE))
    evalset = load_eval_set(tmp_path / SECOND_EVAL_TEMPLATE)

    assert not evalset.criteria
    assert any(item.critical for item in evalset.items)
    for item in evalset.items:
        assert item.reference is not None
        assert all(c.passed for c in run_checks(item.checks, item.reference)), item.id


def test_demo_command_runs_the_default_month_and_prints_the_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, as CI runs it: default days, today's date."""
    folder = tmp_path / "d"

    code = run(["demo", "--dir", str(folder)])

    out = capsys.readouterr().out
    assert code == 0
    report = next(line for line in out.splitlines() if line.startswith("report:"))
    assert Path(report.split(maxsplit=1)[1]).is_file()
    assert f"incident:  {DEGRADED_ROUTE} x" in out
    alerts = next(line for line in out.splitlines() if line.startswith("alerts:"))
    delivered = int(alerts.split()[1])
    assert delivered > 0
    assert f"{delivered} of {delivered} signatures verified" in alerts
    assert "=>  chat-pro > chat-premium" in out
    assert "policy  mode  active chain" in out
    published = json.loads((folder / "policy" / "chat.json").read_text())
    assert published["chain"][0] != DEGRADED_ROUTE
    assert (folder / CONFIG_TEMPLATE).is_file()


def test_the_demo_refuses_a_folder_holding_a_real_project(tmp_path: Path) -> None:
    write_project(tmp_path)  # `routewatch init`'s files: somebody's project
    before = (tmp_path / "routewatch.yaml").read_text()

    with pytest.raises(UsageError, match="not a demo project"):
        run_demo(tmp_path, env={}, clock=FixedClock(NOW), days=2)

    assert (tmp_path / "routewatch.yaml").read_text() == before
    assert not (tmp_path / "routewatch.db").exists()


def test_a_scenario_copied_into_a_new_folder_is_the_one_the_demo_plays(tmp_path: Path) -> None:
    """The scenario file's own advice: copy an edited scenario into a new folder and run
    the demo there; the demo keeps it and writes the rest of the project around it."""
    edited = template_text(SCENARIO_TEMPLATE).replace("seed: 42", "seed: 7")
    assert edited != template_text(SCENARIO_TEMPLATE)
    (tmp_path / SCENARIO_TEMPLATE).write_text(edited)

    write_demo_project(tmp_path)

    assert (tmp_path / SCENARIO_TEMPLATE).read_text() == edited
    assert (tmp_path / CONFIG_TEMPLATE).is_file()
    assert "copy the edited file into a new folder" in template_text(SCENARIO_TEMPLATE)
