"""``routewatch status``: each route's state and last run, in the shape of DESIGN.md.

The pydantic models here are the public ``status --json`` contract (also served at
``GET /status``); ``route_state`` is the pure rule that names a route's state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from routewatch.config import Config
from routewatch.store.nodata import late_since
from routewatch.store.queries import (
    DetectionFacts,
    IncidentFacts,
    RunFacts,
    completed_run_counts,
    latest_detections,
    latest_policy_versions,
    latest_runs,
    open_incidents_by_route,
)

ERRORING_RATE = 0.5
"""A last run with at least this share of failed calls makes a route ``erroring``: its
score then rests on too few answers to mean anything."""


class RouteState(StrEnum):
    """A route's state; values are the contract strings."""

    healthy = "healthy"
    degraded = "degraded"
    erroring = "erroring"
    unknown = "unknown"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LastRun(_Body):
    """The newest finished run of a route."""

    id: int
    """Run id."""
    at: datetime
    """Logical time of the run."""
    eval_set: str
    """Eval set the run replayed."""
    status: str
    """``completed`` or ``failed``."""
    score: float | None
    """Weighted mean item score, 0..1; errors excluded."""
    pass_rate: float | None
    """Share of scored items that passed."""
    error_rate: float | None
    """Share of calls that failed."""
    p50_latency_ms: float | None
    """Median latency of successful calls."""
    p95_latency_ms: float | None
    """95th percentile latency of successful calls."""
    p50_ttft_ms: float | None = None
    """Median time to first token of the streamed calls; null for a route that does not
    stream."""
    cost_usd: float | None
    """What the route's calls cost."""
    tokens_in: int | None
    """Prompt tokens."""
    tokens_out: int | None
    """Completion tokens."""


class Baseline(_Body):
    """The baseline the route's newest detected run was compared with."""

    runs: int
    """Runs in the baseline (fewer than ``min_baseline_runs``: still learning)."""
    mean: float | None
    """Mean run score over the paired items; null while learning."""
    sd: float | None
    """Standard deviation of those run scores."""
    lower_limit: float | None
    """``mean - sigma * max(sd, floor)``: the score below which the simple rule fires."""


class OpenIncident(_Body):
    """An open incident of a route (the newest, when there are several)."""

    id: int
    """Incident id."""
    eval_set: str
    """Eval set it was found on."""
    metric: str
    """``score``, ``error_rate``, ``p95_latency_ms``, ``cost_per_call_usd`` or
    ``critical:<item id>``."""
    detector: str
    """The detector that opened it."""
    opened_at: datetime
    """Logical time of the run that opened it."""
    opening_run_id: int
    """The run that opened it."""
    observed: float
    """The metric on that run."""
    baseline_mean: float | None
    """The metric's baseline then."""
    threshold: float | None
    """The detector's threshold (a p-value level, a lower limit, a count)."""
    p_value: float | None
    """The test's p-value, for p-valued detectors."""
    healthy_streak: int
    """Healthy runs in a row since the last bad one (``recover_runs`` resolve it)."""
    others_open: int
    """Further open incidents of the route (other metrics or eval sets)."""


class RouteStatus(_Body):
    """One route in ``status``."""

    route: str
    """Route name."""
    state: RouteState
    """healthy, degraded, erroring or unknown."""
    last_run: LastRun | None
    """The newest finished run, if any."""
    baseline: Baseline | None
    """Null until detection has a baseline."""
    open_incident: OpenIncident | None
    """The newest open incident, if any."""
    no_data_since: datetime | None = None
    """When the daemon found the route's scheduled runs late (``route.no_data``); null
    while they arrive. A late route is not called healthy: its last run may be days old."""


class PolicyStatus(_Body):
    """One fallback policy in ``status``."""

    name: str
    """Policy name."""
    mode: str
    """``auto`` or ``suggest``."""
    configured_chain: list[str]
    """The chain in routewatch.yaml."""
    active_chain: list[str]
    """The chain in force now."""
    version: int
    """Policy version; 0 until the first change is recorded."""
    pins: list[str] | None = None
    """The chain pinned by hand (``policy pin``), which holds until ``unpin``; null if none."""


class StatusBody(_Body):
    """The whole ``status --json`` document."""

    routes: list[RouteStatus]
    """Every configured route."""
    policies: list[PolicyStatus]
    """Every configured policy."""


def route_state(
    last: RunFacts | None,
    completed_runs: int,
    min_baseline_runs: int,
    *,
    open_incidents: int = 0,
    baseline_known: bool = True,
    late: bool = False,
) -> RouteState:
    """Name a route's state from its newest run, its history and its open incidents.

    ``completed_runs`` is the fewest completed runs of any of the route's eval sets:
    every set needs its own baseline before the route can be called healthy. A route
    whose calls mostly fail is ``erroring`` before anything else; one with an open
    incident is ``degraded``. A ``late`` route (its scheduled runs stopped arriving) is
    ``unknown`` rather than healthy: nothing says how it is doing now.
    """
    if last is None:
        return RouteState.unknown
    if last.status == "failed" or (last.error_rate or 0.0) >= ERRORING_RATE:
        return RouteState.erroring
    if open_incidents:
        return RouteState.degraded
    if completed_runs < min_baseline_runs or not baseline_known or late:
        return RouteState.unknown
    return RouteState.healthy


def build_status(engine: Engine, config: Config) -> StatusBody:
    """Read the store and build the status document for every configured route."""
    return read_status(engine, config)[0]


def read_status(engine: Engine, config: Config) -> tuple[StatusBody, dict[str, int]]:
    """The status document, and the completed runs each route's state was judged on.

    A route with several eval sets counts as far as its least-run one: each learns its
    own baseline. The ``status`` table says how far a route still learning is from the
    same read as its state, so that the two never disagree by a run in between.
    """
    names = list(config.routes)
    last = latest_runs(engine, names)
    counts = completed_run_counts(engine, names)
    completed = {n: min(counts.get((n, e), 0) for e in config.routes[n].evals) for n in names}
    versions = latest_policy_versions(engine)
    detections = latest_detections(engine, names)
    incidents = open_incidents_by_route(engine, names)
    late = late_since(engine, config, now=datetime.now(UTC))
    routes = [
        RouteStatus(
            route=name,
            state=route_state(
                last.get(name),
                completed[name],
                config.detection.min_baseline_runs,
                open_incidents=len(incidents.get(name, [])),
                baseline_known=name not in detections or detections[name].known,
                late=name in late,
            ),
            last_run=_last_run(last.get(name)),
            baseline=_baseline(detections.get(name)),
            open_incident=_incident(incidents.get(name, [])),
            no_data_since=late.get(name),
        )
        for name in names
    ]
    policies = [
        PolicyStatus(
            name=name,
            mode=policy.mode,
            configured_chain=list(policy.chain),
            active_chain=versions[name].chain if name in versions else list(policy.chain),
            version=versions[name].version if name in versions else 0,
            pins=versions[name].pins if name in versions else None,
        )
        for name, policy in config.policies.items()
    ]
    return StatusBody(routes=routes, policies=policies), completed


def _baseline(detection: DetectionFacts | None) -> Baseline | None:
    if detection is None:
        return None
    return Baseline(
        runs=detection.baseline_runs,
        mean=detection.mean,
        sd=detection.sd,
        lower_limit=detection.lower_limit,
    )


def _incident(incidents: list[IncidentFacts]) -> OpenIncident | None:
    if not incidents:
        return None
    newest = incidents[0]
    return OpenIncident(
        id=newest.id,
        eval_set=newest.eval_set,
        metric=newest.metric,
        detector=newest.detector,
        opened_at=newest.opened_at,
        opening_run_id=newest.opening_run_id,
        observed=newest.observed,
        baseline_mean=newest.baseline_mean,
        threshold=newest.threshold,
        p_value=newest.p_value,
        healthy_streak=newest.healthy_streak,
        others_open=len(incidents) - 1,
    )


def _last_run(run: RunFacts | None) -> LastRun | None:
    return None if run is None else LastRun.model_validate(run, from_attributes=True)
