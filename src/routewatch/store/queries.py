"""Reads for ``status`` and the HTTP surface; every function returns plain dataclasses.

ORM rows never leave ``store/``. Each query reads a bounded number of rows (the
newest run per route, counts), so ``status`` stays fast on a year of history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, func, select

from routewatch.store.tables import (
    DetectionRow,
    IncidentRow,
    IncidentStatus,
    PolicyVersionRow,
    RunRow,
    RunStatus,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFacts:
    """A finished run's totals, as ``status`` shows them."""

    id: int
    route: str
    eval_set: str
    at: datetime
    status: str
    score: float | None
    pass_rate: float | None
    error_rate: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    cost_usd: float | None
    tokens_in: int | None
    tokens_out: int | None
    error_message: str | None
    p50_ttft_ms: float | None = None
    """Time to first token of the streamed calls; None when the route does not stream."""
    p95_ttft_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyVersion:
    """The newest recorded version of a policy."""

    policy: str
    version: int
    chain: list[str]
    pins: list[str] | None = None
    """The pinned chain, while one is pinned."""


_FINISHED = (RunStatus.completed, RunStatus.failed)


def _facts(row: RowMapping) -> RunFacts:
    """A ``runs`` row as ``RunFacts``."""
    return RunFacts(
        id=row["id"],
        route=row["route"],
        eval_set=row["eval_set_name"],
        at=row["at"],
        status=row["status"],
        score=row["score"],
        pass_rate=row["pass_rate"],
        error_rate=row["error_rate"],
        p50_latency_ms=row["p50_latency_ms"],
        p95_latency_ms=row["p95_latency_ms"],
        cost_usd=row["cost_usd"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        error_message=row["error_message"],
        p50_ttft_ms=row["p50_ttft_ms"],
        p95_ttft_ms=row["p95_ttft_ms"],
    )


def route_of_run(engine: Engine, run_id: int) -> str | None:
    """The route run ``run_id`` belongs to; None when there is no such run."""
    with engine.connect() as conn:
        route: str | None = conn.execute(
            select(RunRow.route).where(RunRow.id == run_id)
        ).scalar_one_or_none()
    return route


def runs_by_id(engine: Engine, ids: Sequence[int]) -> dict[int, RunFacts]:
    """The stored totals of the runs ``ids`` (those that exist)."""
    if not ids:
        return {}
    query = select(RunRow.__table__).where(RunRow.id.in_(ids))
    with engine.connect() as conn:
        return {row["id"]: _facts(row) for row in conn.execute(query).mappings()}


def latest_runs(engine: Engine, routes: Sequence[str]) -> dict[str, RunFacts]:
    """The newest finished run (by logical time, then id) of each route, any eval set."""
    out: dict[str, RunFacts] = {}
    with engine.connect() as conn:
        for route in routes:
            row = (
                conn.execute(
                    select(RunRow)
                    .where(RunRow.route == route, RunRow.status.in_(_FINISHED))
                    .order_by(RunRow.at.desc(), RunRow.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is not None:
                out[route] = _facts(row)
    return out


def last_successful_runs(engine: Engine, routes: Sequence[str]) -> dict[str, datetime]:
    """The logical time of each route's newest completed run with an answer.

    A run whose every call failed completed, but did not succeed.
    """
    query = (
        select(RunRow.route, func.max(RunRow.at, type_=RunRow.at.type))
        .where(
            RunRow.route.in_(routes),
            RunRow.status == RunStatus.completed,
            RunRow.results_total > RunRow.errors_total,
        )
        .group_by(RunRow.route)
    )
    with engine.connect() as conn:
        return {route: at for route, at in conn.execute(query)}


def latest_completed_runs(engine: Engine, routes: Sequence[str]) -> dict[tuple[str, str], RunFacts]:
    """The newest completed run (by logical time, then id) of each (route, eval set).

    One grouped query over the routes' completed runs, for ``/healthz`` and ``/metrics``.
    """
    completed = (RunRow.route.in_(routes)) & (RunRow.status == RunStatus.completed)
    newest = (
        select(RunRow.route, RunRow.eval_set_name, func.max(RunRow.at).label("at"))
        .where(completed)
        .group_by(RunRow.route, RunRow.eval_set_name)
        .subquery()
    )
    query = (
        select(RunRow.__table__)
        .join(
            newest,
            (RunRow.route == newest.c.route)
            & (RunRow.eval_set_name == newest.c.eval_set_name)
            & (RunRow.at == newest.c.at),
        )
        .where(completed)
        .order_by(RunRow.id)
    )
    out: dict[tuple[str, str], RunFacts] = {}
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            # Ordered by id, so of two runs at one logical time the newer one wins.
            out[(row["route"], row["eval_set_name"])] = _facts(row)
    return out


def completed_run_counts(engine: Engine, routes: Sequence[str]) -> dict[tuple[str, str], int]:
    """How many completed runs each (route, eval set) has."""
    query = (
        select(RunRow.route, RunRow.eval_set_name, func.count())
        .where(RunRow.route.in_(routes), RunRow.status == RunStatus.completed)
        .group_by(RunRow.route, RunRow.eval_set_name)
    )
    with engine.connect() as conn:
        return {(route, name): int(count) for route, name, count in conn.execute(query)}


def latest_policy_versions(engine: Engine) -> dict[str, PolicyVersion]:
    """The newest version of every policy that has one."""
    newest = (
        select(PolicyVersionRow.policy, func.max(PolicyVersionRow.version).label("version"))
        .group_by(PolicyVersionRow.policy)
        .subquery()
    )
    query = select(
        PolicyVersionRow.policy,
        PolicyVersionRow.version,
        PolicyVersionRow.chain,
        PolicyVersionRow.pins,
    ).join(
        newest,
        (PolicyVersionRow.policy == newest.c.policy)
        & (PolicyVersionRow.version == newest.c.version),
    )
    with engine.connect() as conn:
        return {
            r.policy: PolicyVersion(
                policy=r.policy,
                version=r.version,
                chain=list(r.chain),
                pins=None if r.pins is None else list(r.pins),
            )
            for r in conn.execute(query)
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectionFacts:
    """What detection concluded about a route's newest detected run."""

    run_id: int
    eval_set: str
    known: bool
    baseline_runs: int
    mean: float | None
    sd: float | None
    lower_limit: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFacts:
    """An incident, as ``status`` and ``incidents`` show it."""

    id: int
    route: str
    eval_set: str
    metric: str
    detector: str
    opened_at: datetime
    opening_run_id: int
    observed: float
    baseline_mean: float | None
    threshold: float | None
    p_value: float | None
    healthy_streak: int
    status: str = "open"
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    """``routewatch`` (healthy runs resolved it), ``cli`` or ``api`` (by hand); None while open."""
    resolution_reason: str | None = None
    """The reason given when it was resolved by hand."""


def incident_json(incident: IncidentFacts) -> dict[str, Any]:
    """An incident as ``incidents --json`` and the HTTP API give it (times in UTC, ``Z``)."""
    body = dataclasses.asdict(incident)
    for key in ("opened_at", "resolved_at"):
        if body[key] is not None:
            body[key] = body[key].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return body


def incident_facts(r: Any) -> IncidentFacts:
    """An ``incidents`` row as ``IncidentFacts``."""
    resolution = (r.detail or {}).get("resolution") or {}
    resolved = r.status != IncidentStatus.open
    return IncidentFacts(
        id=r.id,
        route=r.route,
        eval_set=r.eval_set_name,
        metric=r.metric,
        detector=r.detector,
        opened_at=r.opened_at,
        opening_run_id=r.opening_run_id,
        observed=r.observed,
        baseline_mean=r.baseline_mean,
        threshold=r.threshold,
        p_value=r.p_value,
        healthy_streak=r.healthy_streak,
        status=r.status,
        resolved_at=r.resolved_at,
        resolved_by=resolution.get("by", "routewatch") if resolved else None,
        resolution_reason=resolution.get("reason") if resolved else None,
    )


def list_incidents(
    engine: Engine, routes: Sequence[str] | None, *, open_only: bool, limit: int | None
) -> list[IncidentFacts]:
    """The incidents of ``routes``, only the open ones or all, newest opened first.

    ``routes`` None: every route stored, configured or not. At most ``limit`` when given.
    """
    query = select(IncidentRow.__table__)
    if routes is not None:
        query = query.where(IncidentRow.route.in_(routes))
    if open_only:
        query = query.where(IncidentRow.status == IncidentStatus.open)
    query = query.order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [incident_facts(r) for r in conn.execute(query)]


def latest_detections(engine: Engine, routes: Sequence[str]) -> dict[str, DetectionFacts]:
    """The newest detection (by logical time) of each route, any eval set."""
    out: dict[str, DetectionFacts] = {}
    with engine.connect() as conn:
        for route in routes:
            row = conn.execute(
                select(DetectionRow.__table__)
                .where(DetectionRow.route == route)
                .order_by(DetectionRow.at.desc(), DetectionRow.run_id.desc())
                .limit(1)
            ).first()
            if row is not None:
                out[route] = DetectionFacts(
                    run_id=row.run_id,
                    eval_set=row.eval_set_name,
                    known=row.known,
                    baseline_runs=row.baseline_runs,
                    mean=row.baseline_mean,
                    sd=row.baseline_sd,
                    lower_limit=row.lower_limit,
                )
    return out


def open_incidents_by_route(
    engine: Engine, routes: Sequence[str]
) -> dict[str, list[IncidentFacts]]:
    """Each route's open incidents, newest first."""
    query = (
        select(IncidentRow.__table__)
        .where(IncidentRow.route.in_(routes), IncidentRow.status == IncidentStatus.open)
        .order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc())
    )
    out: dict[str, list[IncidentFacts]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            out.setdefault(r.route, []).append(incident_facts(r))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedRun:
    """A run that failed, and the slot that repeating retries."""

    id: int
    route: str
    eval_set: str
    slot_key: str


def failed_runs(engine: Engine, routes: Sequence[str], *, since: datetime) -> list[FailedRun]:
    """The runs of ``routes`` that failed at or after ``since`` (this command's), oldest first.

    By when they failed, not by the slots planned: a resumed run has its own slot.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunRow.id, RunRow.route, RunRow.eval_set_name, RunRow.slot_key)
            .where(
                RunRow.route.in_(list(routes)),
                RunRow.status == RunStatus.failed,
                RunRow.finished_at >= since,
            )
            .order_by(RunRow.finished_at, RunRow.id)
        ).all()
    return [
        FailedRun(id=r.id, route=r.route, eval_set=r.eval_set_name, slot_key=r.slot_key)
        for r in rows
    ]
