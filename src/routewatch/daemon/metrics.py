"""``GET /metrics``: the store's figures as Prometheus metrics, read at scrape time.

``StoreCollector`` is a custom prometheus-client collector: each scrape runs a handful of
grouped queries (run counts and judge totals per route, the newest completed run per
route and eval set, the outbox backlog, open incidents, policy versions), so nothing is
kept in process memory and every replica reports the same numbers. Labels come from the
configuration (``state.config``, read per scrape), which bounds their cardinality.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import InterfaceError, InternalError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from routewatch.config import Config
from routewatch.daemon.state import DaemonState
from routewatch.store.nodata import late_since
from routewatch.store.outbox import backlog
from routewatch.store.queries import (
    RunFacts,
    last_successful_runs,
    latest_completed_runs,
    latest_policy_versions,
    open_incidents_by_route,
)
from routewatch.store.tables import RunRow, RunStatus

log = logging.getLogger("routewatch.daemon")

FINISHED = (RunStatus.completed, RunStatus.failed, RunStatus.cancelled)
"""Run states that only ever grow per route: exported as a counter."""
IN_PROGRESS = (RunStatus.pending, RunStatus.running)


@dataclass(slots=True)
class RouteTotals:
    """Everything a route's runs add up to so far."""

    runs: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in FINISHED})
    in_progress: int = 0
    judge_calls: int = 0
    judge_calls_saved: int = 0
    judge_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFigures:
    """One scrape's reading of the store."""

    totals: Mapping[str, RouteTotals]
    latest: Mapping[tuple[str, str], RunFacts]
    outbox_pending: int
    outbox_dead: int
    open_incidents: Mapping[str, int]
    policy_versions: Mapping[str, int]
    last_success: Mapping[str, datetime] = field(default_factory=dict)
    """Each route's newest completed run with at least one answer."""
    late: Mapping[str, bool] = field(default_factory=dict)
    """Each scheduled route: whether its runs are late (``route.no_data`` raised)."""


def route_totals(engine: Engine, routes: list[str]) -> dict[str, RouteTotals]:
    """Run counts by state and judge totals of each route, in one grouped query."""
    query = (
        select(
            RunRow.route,
            RunRow.status,
            func.count(),
            func.sum(RunRow.judge_calls),
            func.sum(RunRow.judge_calls_saved),
            func.sum(RunRow.judge_cost_usd),
        )
        .where(RunRow.route.in_(routes))
        .group_by(RunRow.route, RunRow.status)
    )
    out = {route: RouteTotals() for route in routes}
    with engine.connect() as conn:
        for route, status, count, calls, saved, cost in conn.execute(query):
            totals = out[route]
            if status in IN_PROGRESS:
                totals.in_progress += int(count)
            else:
                totals.runs[status] = int(count)
            # The judge columns stay null until a run finishes.
            totals.judge_calls += int(calls or 0)
            totals.judge_calls_saved += int(saved or 0)
            totals.judge_cost_usd += float(cost or 0.0)
    return out


def read_store(engine: Engine, config: Config) -> StoreFigures:
    """Read every figure ``/metrics`` exports for the configured routes and policies."""
    routes = list(config.routes)
    outbox = backlog(engine)
    incidents = open_incidents_by_route(engine, routes)
    versions = latest_policy_versions(engine)
    return StoreFigures(
        totals=route_totals(engine, routes),
        latest={
            key: run
            for key, run in latest_completed_runs(engine, routes).items()
            if key[1] in config.routes[key[0]].evals
        },
        outbox_pending=outbox.pending,
        outbox_dead=outbox.dead,
        open_incidents={route: len(incidents.get(route, [])) for route in routes},
        policy_versions={
            name: versions[name].version if name in versions else 0 for name in config.policies
        },
        last_success=last_successful_runs(engine, routes),
        late=_late(engine, config),
    )


def _late(engine: Engine, config: Config) -> dict[str, bool]:
    late = late_since(engine, config, now=datetime.now(UTC))
    return {name: name in late for name, route in config.routes.items() if route.schedule}


DATABASE_DOWN: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    InternalError,
)
"""What SQLAlchemy raises when the database cannot be reached or is too busy; narrowed by
``database_down``, since SQLite raises the same class for a mistake in a statement."""

_SQLITE_OUTAGES = (
    "unable to open",
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
    "interrupted",
)
"""What sqlite3's ``OperationalError`` says when the file is unreachable or busy; it says
``no such table``, ``no such column`` or ``syntax error`` for a bug, with the same class."""


READ_ONLY_SQL_TRANSACTION = "25006"
"""PostgreSQL's SQLSTATE for a write in a read-only transaction."""


def database_down(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage to report in one line and wait out, not a bug.

    A bug (a statement SQLite cannot run) is logged with its traceback and answered 500;
    reported as an outage, it would be waited out for ever behind a 503.
    """
    if not isinstance(exc, DATABASE_DOWN):
        return False
    orig = getattr(exc, "orig", None)
    if isinstance(exc, InternalError):
        # PostgreSQL's InternalError is mostly bugs; a read-only transaction (a standby
        # after a failover, default_transaction_read_only) is an outage to wait out.
        return getattr(orig, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION
    if isinstance(exc, OperationalError) and isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return any(phrase in text for phrase in _SQLITE_OUTAGES)
    # PostgreSQL's OperationalError covers lost connections, admin shutdowns and
    # statement timeouts: all an outage, the last too (a query slow for ever would be
    # answered 503 for ever; its warning line says so each time).
    return True


def first_line(exc: BaseException) -> str:
    """The first line of an error's message: SQLAlchemy appends the SQL and a help link."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


LATEST_RUN_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("score", "routewatch_last_run_score", "Score (0..1) of the newest completed run.", 1.0),
    ("pass_rate", "routewatch_last_run_pass_rate", "Pass rate of the newest completed run.", 1.0),
    (
        "error_rate",
        "routewatch_last_run_error_rate",
        "Share of failed calls in the newest completed run.",
        1.0,
    ),
    (
        "p95_latency_ms",
        "routewatch_last_run_p95_latency_seconds",
        "95th percentile call latency of the newest completed run, in seconds.",
        1000.0,
    ),
    (
        "p50_ttft_ms",
        "routewatch_last_run_p50_ttft_seconds",
        "Median time to the first token of the newest completed run's streamed calls, in "
        "seconds (routes with stream: true only).",
        1000.0,
    ),
    (
        "cost_usd",
        "routewatch_last_run_cost_usd",
        "What the route's calls cost in the newest completed run, in US dollars.",
        1.0,
    ),
)
"""(RunFacts field, metric name, help, divisor): the newest completed run's figures."""


def figures_metrics(figures: StoreFigures) -> Iterator[Metric]:
    """The Prometheus metric families of one reading of the store."""
    # A gauge: a failed run that is retried leaves ``failed`` again, so the count can fall.
    runs = GaugeMetricFamily(
        "routewatch_runs",
        "Finished runs by route and current final state (a retried run can change state).",
        labels=["route", "status"],
    )
    running = GaugeMetricFamily(
        "routewatch_runs_in_progress", "Runs pending or running, by route.", labels=["route"]
    )
    judge_calls = CounterMetricFamily(
        "routewatch_judge_calls", "Judge calls made for a route's runs.", labels=["route"]
    )
    judge_saved = CounterMetricFamily(
        "routewatch_judge_cache_hits",
        "Judge verdicts taken from the cache instead of a call, by route.",
        labels=["route"],
    )
    judge_cost = CounterMetricFamily(
        "routewatch_judge_cost_usd",
        "What judging a route's runs cost, in US dollars.",
        labels=["route"],
    )
    for route, totals in figures.totals.items():
        for status, count in totals.runs.items():
            runs.add_metric([route, status], count)
        running.add_metric([route], totals.in_progress)
        judge_calls.add_metric([route], totals.judge_calls)
        judge_saved.add_metric([route], totals.judge_calls_saved)
        judge_cost.add_metric([route], totals.judge_cost_usd)
    yield from (runs, running, judge_calls, judge_saved, judge_cost)

    at = GaugeMetricFamily(
        "routewatch_last_run_timestamp_seconds",
        "Logical time of the newest completed run, as a Unix timestamp.",
        labels=["route", "eval_set"],
    )
    for (route, eval_set), run in figures.latest.items():
        at.add_metric([route, eval_set], run.at.timestamp())
    yield at
    # A run whose every call failed is completed too: alert on this one going stale.
    success = GaugeMetricFamily(
        "routewatch_last_successful_run_timestamp_seconds",
        "Logical time of the route's newest completed run with at least one answer.",
        labels=["route"],
    )
    for route, moment in figures.last_success.items():
        success.add_metric([route], moment.timestamp())
    yield success
    no_data = GaugeMetricFamily(
        "routewatch_route_no_data",
        "1 while a scheduled route's runs are late (route.no_data raised), else 0.",
        labels=["route"],
    )
    for route, late in figures.late.items():
        no_data.add_metric([route], float(late))
    yield no_data
    for attr, name, documentation, divisor in LATEST_RUN_GAUGES:
        gauge = GaugeMetricFamily(name, documentation, labels=["route", "eval_set"])
        for (route, eval_set), run in figures.latest.items():
            value = getattr(run, attr)
            if value is not None:  # a figure the run could not measure is left out
                gauge.add_metric([route, eval_set], value / divisor)
        yield gauge

    outbox = GaugeMetricFamily(
        "routewatch_outbox_messages",
        "Alert and publisher messages not delivered: pending (will be retried) or dead.",
        labels=["status"],
    )
    outbox.add_metric(["pending"], figures.outbox_pending)
    outbox.add_metric(["dead"], figures.outbox_dead)
    yield outbox
    incidents = GaugeMetricFamily(
        "routewatch_open_incidents", "Open incidents by route.", labels=["route"]
    )
    for route, count in figures.open_incidents.items():
        incidents.add_metric([route], count)
    yield incidents
    versions = GaugeMetricFamily(
        "routewatch_policy_version",
        "Version of each policy's active chain (0 until its first version is stored).",
        labels=["policy"],
    )
    for name, version in figures.policy_versions.items():
        versions.add_metric([name], version)
    yield versions


class StoreCollector:
    """A prometheus-client collector that reads the daemon's database on every scrape.

    Without a ``describe`` method it is not collected when registered, so building the
    app touches no database. When the database cannot be read, the scrape still answers:
    ``routewatch_database_up`` is 0 and the store's metrics are left out.
    """

    def __init__(self, state: DaemonState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family; called by the registry on each scrape."""
        yield _gauge(
            "routewatch_scheduler_up",
            "1 when the daemon's scheduler loop is running.",
            float(self.state.scheduler_alive()),
        )
        yield _gauge(
            "routewatch_leader",
            "1 when this replica runs the schedules.",
            float(self.state.is_leader()),
        )
        try:
            figures = read_store(self.state.engine, self.state.config)
        except SQLAlchemyError as exc:
            if database_down(exc):
                log.warning("metrics: cannot read the database: %s", first_line(exc))
            else:  # a bug: its traceback says where
                log.exception("metrics: reading the database failed")
            figures = None
        yield _gauge(
            "routewatch_database_up",
            "1 when the last scrape could read the database.",
            float(figures is not None),
        )
        if figures is not None:
            yield from figures_metrics(figures)


def metrics_registry(state: DaemonState) -> CollectorRegistry:
    """A registry of its own for one app, holding only the store collector."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(state))
    return registry
