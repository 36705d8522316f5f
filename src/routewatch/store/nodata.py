"""NO_DATA: a scheduled run that did not complete in time is news too.

Per scheduled route, the alert state ``runs`` (in ``alert_states``) is ``ok`` while every
eval set of the route has a completed run with at least one answer at or after its newest
slot that is older than
the grace period, and ``no_data`` otherwise. A route with no completed run is not late
until a run of it has been tried: then every run so far failed, which is news. People
are told on each transition (``route.no_data``, ``route.data_resumed``), through the
outbox, never on every check. The daemon checks every minute; nothing else calls it,
since a route driven by hand has no slot to miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, insert, select, type_coerce, update

from routewatch.config import Config
from routewatch.cron import last_fire_at_or_before, parse_cron
from routewatch.store.outbox import enqueue
from routewatch.store.tables import AlertState, AlertStateRow, RunRow, RunStatus, UTCDateTime

RUNS_METRIC = "runs"
"""The ``alert_states`` metric that tracks whether scheduled runs arrive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataState:
    """One route's NO_DATA check."""

    route: str
    slot: datetime
    """The newest slot past its grace period."""
    missing: tuple[str, ...]
    """Eval sets with no completed run since ``slot``."""
    changed: bool
    """The state moved (an event was raised)."""

    @property
    def state(self) -> AlertState:
        """``no_data`` when an eval set is missing, else ``ok``."""
        return AlertState.no_data if self.missing else AlertState.ok


def _attempted(conn: Connection, route: str, *, by: datetime) -> bool:
    """Whether a run of ``route`` was tried for a slot at or before ``by``.

    Whatever became of that run, the route was live by then, so the slot counts.
    """
    found = conn.execute(
        select(RunRow.id).where(RunRow.route == route, RunRow.at <= by).limit(1)
    ).first()
    return found is not None


def _newest_with_answers(conn: Connection, route: str) -> dict[str, datetime]:
    """Each eval set's newest completed run of ``route`` that brought an answer."""
    return dict(
        conn.execute(
            select(RunRow.eval_set_name, type_coerce(func.max(RunRow.at), UTCDateTime()))
            .where(
                RunRow.route == route,
                RunRow.status == RunStatus.completed,
                # A run whose every call failed (a provider down, a wrong base_url)
                # completed, but brought no data.
                RunRow.results_total > RunRow.errors_total,
            )
            .group_by(RunRow.eval_set_name)
        ).all()
    )


def late_since(engine: Engine, config: Config, *, now: datetime) -> dict[str, datetime]:
    """The scheduled routes the NO_DATA check found late and still are, and since when.

    The check stores the state; only the daemon runs it. The runs may have come since
    (``routewatch run`` while the daemon is stopped), so a route whose every eval set
    has a run with answers at or after its newest slot past the grace, as the check
    would find now, is not late.
    """
    scheduled = {n: r for n, r in config.routes.items() if r.schedule is not None}
    grace = timedelta(hours=config.alerts.no_data_hours)
    out: dict[str, datetime] = {}
    with engine.connect() as conn:
        stored = conn.execute(
            select(AlertStateRow.route, AlertStateRow.since).where(
                AlertStateRow.route.in_(list(scheduled)),
                AlertStateRow.metric == RUNS_METRIC,
                AlertStateRow.state == AlertState.no_data,
            )
        ).all()
        for name, since in stored:
            route = scheduled[name]
            trigger = parse_cron(route.schedule or "", config.timezone)
            slot = last_fire_at_or_before(trigger, now - grace)
            newest = _newest_with_answers(conn, name)
            if slot is None or any(newest.get(e) is None or newest[e] < slot for e in route.evals):
                out[name] = since
    return out


def check_no_data(
    engine: Engine, config: Config, *, now: datetime, grace: timedelta, targets: Sequence[str]
) -> list[DataState]:
    """Check every scheduled route's newest slot older than ``grace``; alert on changes."""
    out = []
    for name, route in config.routes.items():
        if route.schedule is None:
            continue
        slot = last_fire_at_or_before(parse_cron(route.schedule, config.timezone), now - grace)
        if slot is None:
            continue
        with engine.begin() as conn:
            newest = _newest_with_answers(conn, name)
            if not newest and not _attempted(conn, name, by=slot):
                # Never run yet (a new route, a fresh deployment): nothing is late. A route
                # whose every run failed so far (a missing API key, a wrong URL) is late.
                continue
            missing = tuple(e for e in route.evals if newest.get(e) is None or newest[e] < slot)
            state = AlertState.no_data if missing else AlertState.ok
            row = conn.execute(
                select(AlertStateRow.state).where(
                    AlertStateRow.route == name, AlertStateRow.metric == RUNS_METRIC
                )
            ).one_or_none()
            before = AlertState(row.state) if row else AlertState.ok
            if row is None:
                conn.execute(
                    insert(AlertStateRow).values(
                        route=name, metric=RUNS_METRIC, state=state, since=now
                    )
                )
            elif before != state:
                conn.execute(
                    update(AlertStateRow)
                    .where(AlertStateRow.route == name, AlertStateRow.metric == RUNS_METRIC)
                    .values(state=state, since=now, last_notified_at=now)
                )
            changed = before != state
            if changed:
                enqueue(
                    conn,
                    {
                        "event": "route.no_data" if missing else "route.data_resumed",
                        "id": str(uuid.uuid4()),
                        "at": now.isoformat(),
                        "route": name,
                        "eval_set": missing[0] if missing else None,
                        "slot": slot.isoformat(),
                        "missing_eval_sets": list(missing),
                        "grace_hours": grace.total_seconds() / 3600,
                    },
                    targets,
                    now,
                )
        out.append(DataState(route=name, slot=slot, missing=missing, changed=changed))
    return out
