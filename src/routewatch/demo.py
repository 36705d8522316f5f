"""``routewatch demo``: the whole loop with no keys and no services.

Writes a project (``routewatch init``'s files, a second eval set and a simulator
scenario) into a folder, serves the built-in simulator and a signature-checking webhook
receiver on free loopback ports, points the project at both (in memory) and backfills
daily runs into SQLite. The cheap route's model breaks for the last days, so detection
opens an incident, the fallback policy demotes the route and the alerts reach the
receiver; the report of the last week is written at the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from routewatch.alerts.dispatch import Dispatcher
from routewatch.alerts.webhook import verify
from routewatch.clock import Clock
from routewatch.config import Config, WebhookAlert
from routewatch.cycle import RunVerdict, compare_cycle, completed_runs, detect_cycle
from routewatch.detect.findings import Candidate
from routewatch.errors import UsageError
from routewatch.files import write_text
from routewatch.project import Project, load_project
from routewatch.report.data import days_window
from routewatch.report.render import write_report
from routewatch.runner import RunReport, execute, plan_runs, replay_gc
from routewatch.scaffold import CONFIG_TEMPLATE, EVAL_TEMPLATE, template_text, write_project
from routewatch.scaffold import SCENARIO_TEMPLATE as INIT_SCENARIO
from routewatch.sim.app import create_app
from routewatch.sim.scenario import Change, ModelBehaviour, Scenario, load_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.status import StatusBody, build_status
from routewatch.store.detection import open_incidents
from routewatch.store.migrate import open_database

SCENARIO_TEMPLATE = "demo-scenario.yaml"
SECOND_EVAL_TEMPLATE = "refund-policy.yaml"
DEFAULT_DAYS = 30
REPORT_DAYS = 7
"""The report covers the last week of the backfill."""
DEGRADED_ROUTE = "chat-flash"
DEGRADED_DAYS = 4
DEGRADED_QUALITY = 0.3
"""The broken model answers right 30 % of the time (98 % before): a drop the paired test or
a critical item catches on the first or second broken day, whatever days the backfill
covers, while a healthy month opens no incident."""
SECRET_ENV = "ROUTEWATCH_DEMO_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret
"""The variable naming the webhook secret the demo makes up for each run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Degradation:
    """The demo's breakage: a route's model answers worse from a logical day on."""

    route: str
    model: str
    since: date
    quality: float

    def applied(self, scenario: Scenario) -> Scenario:
        """``scenario`` with one more change: the model's quality from ``since`` on."""
        own = scenario.models.get(self.model, ModelBehaviour())
        change = Change.model_validate({"from": self.since, "quality": self.quality})
        broken = own.model_copy(update={"changes": (*own.changes, change)})
        return scenario.model_copy(update={"models": {**scenario.models, self.model: broken}})


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One POST the demo's webhook receiver got."""

    event: str
    delivery_id: str
    verified: bool
    """The ``X-Routewatch-Signature`` header is the body's HMAC with the demo's secret."""
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedIncident:
    """An incident a run opened, with the findings that paged on its metric."""

    route: str
    eval_set: str
    at: datetime
    """The logical time of the run."""
    metric: str
    findings: tuple[Candidate, ...]
    """One per detector that paged, most significant first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What the demo did: its project, each day's run reports and what followed."""

    config_path: Path
    reports: list[RunReport]
    verdicts: list[RunVerdict] = field(default_factory=list)
    """Detection's verdict on each run, in order."""
    opened: list[OpenedIncident] = field(default_factory=list)
    """The incidents this demo's runs opened, in run order."""
    degradation: Degradation | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    """What the local webhook receiver got, in order."""
    webhook_url: str = ""
    report_path: Path | None = None
    policy_files: tuple[Path, ...] = ()
    """The files the fallback policies are published to."""
    status: StatusBody | None = None
    """``routewatch status`` after the last day."""


def run_demo(
    directory: Path,
    *,
    env: Mapping[str, str],
    clock: Clock,
    days: int = DEFAULT_DAYS,
    on_day: Callable[[datetime, bool, bool], None] | None = None,
) -> DemoResult:
    """Backfill ``days`` daily runs (06:00 UTC, up to today), the last few degraded.

    The project is written only where it is missing, so a second demo reuses it
    and its database: slots already run are skipped. ``on_day`` hears of each day
    once it is done: whether the cheap route was broken on it, and whether anything
    was replayed (False when an earlier demo had run it).
    """
    config_path = write_demo_project(directory)
    env = {k: v for k, v in env.items() if k != "ROUTEWATCH_DATABASE_URL"}
    project = load_project(config_path, env)
    today = clock.now().date()
    if datetime.combine(today, time(6, 0), tzinfo=UTC) > clock.now():
        # Before 06:00 UTC today's slot is still ahead: the demo ends with yesterday's.
        today -= timedelta(days=1)
    slots = [
        datetime.combine(today - timedelta(days=n), time(6, 0), tzinfo=UTC)
        for n in reversed(range(days))
    ]
    degradation = _degradation(project.config, today)
    scenario = load_scenario(directory / SCENARIO_TEMPLATE)
    if degradation is not None:
        scenario = degradation.applied(scenario)
    secret = secrets.token_hex(16)
    env[SECRET_ENV] = secret
    reports: list[RunReport] = []
    verdicts: list[RunVerdict] = []
    engine = open_database(project.config.database_url)
    try:
        open_before = {
            (route, name): {
                i.metric for i in open_incidents(engine, route=route, eval_set_name=name)
            }
            for route, settings in project.config.routes.items()
            for name in settings.evals
        }
        with (
            serve_in_thread(create_app(scenario, project.eval_sets)) as url,
            webhook_receiver(secret) as (webhook_url, deliveries),
        ):
            local = _pointed_at(project, f"{url}/v1", webhook_url)
            for at in slots:
                plans = plan_runs(local.config, routes=[], at=at, now=clock.now())
                with replay_gc():
                    day = asyncio.run(execute(local, engine, plans, env=env, clock=clock))
                verdicts += detect_cycle(engine, local.config, completed_runs(day), now=clock.now())
                # Publishers write the policy files; the local receiver gets the alerts.
                Dispatcher(engine, local.config, env, now=clock.now).deliver_due()
                compare_cycle(
                    engine,
                    local.config,
                    completed_runs(day),
                    now=clock.now(),
                    eval_sets=local.eval_sets,
                    env=env,
                )
                reports += day
                if on_day is not None:
                    broken = degradation is not None and at.date() >= degradation.since
                    on_day(at, broken, any(r.summary is not None for r in day))
            first = max(slots[0].date(), today - timedelta(days=REPORT_DAYS - 1))
            window = days_window(first, today, local.config.timezone)
            report_path = write_report(
                engine, local.config, window, now=clock.now(), eval_sets=local.eval_sets
            )
            status = build_status(engine, local.config)
    finally:
        engine.dispose()
    return DemoResult(
        config_path=config_path,
        reports=reports,
        verdicts=verdicts,
        opened=_opened(verdicts, reports, open_before),
        degradation=degradation,
        deliveries=list(deliveries),
        webhook_url=webhook_url,
        report_path=report_path,
        policy_files=tuple(
            Path(p.path)
            for policy in project.config.policies.values()
            for p in policy.publish
            if p.path is not None
        ),
        status=status,
    )


DEMO_HEADER = "# Written by `routewatch demo`"
"""The first line of a demo project's config: the demo only ever touches such folders."""


def write_demo_project(directory: Path) -> Path:
    """Write the demo's files where they are missing; return the config's path.

    The config is ``routewatch init``'s, with the second eval set added to every route.
    """
    config_path = directory / CONFIG_TEMPLATE
    second = Path(SECOND_EVAL_TEMPLATE).stem
    if config_path.exists() and not config_path.read_text(encoding="utf-8").startswith(DEMO_HEADER):
        # Never backfill simulated runs into a real project's database or publish its policy.
        raise UsageError(
            f"{config_path} is not a demo project (it lacks the demo's first line); "
            "give `routewatch demo --dir` a new or a demo folder"
        )
    if not config_path.exists():
        write_project(directory, scenario=False)
        first = Path(EVAL_TEMPLATE).stem
        text = (
            template_text(CONFIG_TEMPLATE)
            .replace(f"evals: [{first}]", f"evals: [{first}, {second}]")
            .replace(f"--scenario {INIT_SCENARIO}", f"--scenario {SCENARIO_TEMPLATE}")
        )
        header = f"{DEMO_HEADER}: `routewatch init`'s config plus {second}.\n"
        write_text(config_path, header + text)
    for path, name in (
        (directory / "evals" / SECOND_EVAL_TEMPLATE, SECOND_EVAL_TEMPLATE),
        (directory / SCENARIO_TEMPLATE, SCENARIO_TEMPLATE),
    ):
        if not path.exists():
            write_text(path, template_text(name))
    return config_path


def _opened(
    verdicts: Sequence[RunVerdict],
    reports: Sequence[RunReport],
    open_before: Mapping[tuple[str, str], set[str]],
) -> list[OpenedIncident]:
    """The incidents the runs opened: metrics open after a run and not before it."""
    at = {r.run_id: r.at for r in reports}
    open_now = {key: frozenset(metrics) for key, metrics in open_before.items()}
    opened = []
    for v in verdicts:
        if v.skipped:
            continue
        key = (v.route, v.eval_set)
        for metric in sorted(v.open_metrics - open_now.get(key, frozenset())):
            findings = sorted(
                (f for f in v.findings if f.metric == metric),
                key=lambda f: math.inf if f.p_value is None else f.p_value,
            )
            opened.append(
                OpenedIncident(
                    route=v.route,
                    eval_set=v.eval_set,
                    at=at[v.run_id],
                    metric=metric,
                    findings=tuple(findings),
                )
            )
        open_now[key] = v.open_metrics
    return opened


def _degradation(config: Config, today: date) -> Degradation | None:
    route = config.routes.get(DEGRADED_ROUTE)
    if route is None:
        return None
    since = today - timedelta(days=DEGRADED_DAYS - 1)
    return Degradation(
        route=DEGRADED_ROUTE, model=route.model, since=since, quality=DEGRADED_QUALITY
    )


def _pointed_at(project: Project, base_url: str, webhook_url: str) -> Project:
    """The project with every provider served by the simulator, alerts to the receiver."""
    providers = {
        # The simulator has no quota to respect: no pacing, so the backfill runs at full speed.
        name: provider.model_copy(
            update={"base_url": base_url, "api_key_env": None, "requests_per_minute": None}
        )
        for name, provider in project.config.providers.items()
    }
    hook = WebhookAlert(url=webhook_url, secret_env=SECRET_ENV)
    alerts = project.config.alerts.model_copy(update={"slack": None, "webhooks": [hook]})
    config = project.config.model_copy(update={"providers": providers, "alerts": alerts})
    return Project(config=config, eval_sets=project.eval_sets)


@contextmanager
def webhook_receiver(secret: str) -> Iterator[tuple[str, list[Delivery]]]:
    """Serve a webhook receiver on a free loopback port until the block exits.

    Yields its URL and the list it appends each delivery to, with whether the
    signature matched ``secret``; it answers 204 either way, as a receiver that logs
    bad signatures would.
    """
    deliveries: list[Delivery] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get("X-Routewatch-Signature") or ""
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            delivery = Delivery(
                event=self.headers.get("X-Routewatch-Event") or "",
                delivery_id=self.headers.get("X-Routewatch-Delivery") or "",
                verified=verify(body, signature, secret),
                body=payload if isinstance(payload, dict) else {},
            )
            with lock:
                deliveries.append(delivery)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Stay quiet: the demo prints its own summary."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="routewatch-demo-webhook")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/routewatch", deliveries
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
