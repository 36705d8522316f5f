"""The SQL schema: one typed declarative model per table, and the types they share.

Everything routewatch remembers lives here: eval-set versions, runs and their results,
scores and cached judge verdicts, incidents, the alert outbox and policy history.
Alembic revisions in ``alembic/versions`` must match these models exactly; a test compares
them. ORM rows never leave ``routewatch.store``: queries turn them into dataclasses.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names derived from their columns, so migrations name them the same way on
every database and a later revision can drop or alter them by name."""

HASH_LENGTH = 16
"""Length of the content hashes (eval-set version, item hash, route config hash)."""

CANARY_ERROR_LENGTH = 500
"""Longest ``canary_results.error`` kept: the judge layer's one-line reason (a provider's
answer in it is already cut to 200 characters), cut here if it is longer still."""


class RunStatus(StrEnum):
    """Where a run is in its life; a run is ``running`` while an owner heartbeats it."""

    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class IncidentStatus(StrEnum):
    """Whether an incident is still open."""

    open = "open"
    resolved = "resolved"


class AlertState(StrEnum):
    """The alerting state of one (route, metric)."""

    ok = "ok"
    alert = "alert"
    no_data = "no_data"


class OutboxStatus(StrEnum):
    """Delivery state of one outbox message; ``dead`` means retries are exhausted."""

    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class PairwisePreference(StrEnum):
    """Which output the judge preferred in both orders; ``tie`` when the orders disagree."""

    baseline = "baseline"
    today = "today"
    tie = "tie"


def _one_of(column: str, vocabulary: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in vocabulary)
    return f"{column} IN ({values})"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC ``datetime``.

    SQLite keeps no offset (``12:00+02:00`` would come back as a naive ``12:00``), so
    values are converted to UTC before they are written and marked UTC when read; on
    PostgreSQL the column is a ``timestamptz``. Naive datetimes are refused with
    ``ValueError``, because their instant is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Check that ``value`` is aware and convert it to UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return ``value`` as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base: its ``metadata`` is what Alembic compares and migrates."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Explicit, because SQLAlchemy 2.0 maps ``float`` to Float and 2.1 to Double.
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), float: Double()}


class EvalSetRow(Base):
    """One version of an eval set; a changed file adds a row, never overwrites one."""

    __tablename__ = "eval_sets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(HASH_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    scale_min: Mapped[float]
    scale_max: Mapped[float]
    pass_threshold: Mapped[float]
    judge: Mapped[str | None] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class EvalItemRow(Base):
    """One item of one eval-set version; ``item_hash`` pairs an item across versions."""

    __tablename__ = "eval_items"
    __table_args__ = (UniqueConstraint("eval_set_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    eval_set_id: Mapped[int] = mapped_column(ForeignKey("eval_sets.id"))
    item_id: Mapped[str] = mapped_column(String(200))
    item_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), index=True)
    position: Mapped[int]
    weight: Mapped[float]
    critical: Mapped[bool]
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)


class EvalSetSourceRow(Base):
    """A digest of an eval-set file as read, and the stored version it loaded as.

    Lets a run find its eval set's version and item hashes without recomputing them
    from every item (``ensure_eval_set``); one version may have many sources (a
    comment edited, items reordered). See ``EvalSet.source_digest``.
    """

    __tablename__ = "eval_set_sources"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    eval_set_id: Mapped[int] = mapped_column(ForeignKey("eval_sets.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class RouteSnapshotRow(Base):
    """A route's model, parameters and prices as they were when it ran."""

    __tablename__ = "route_snapshots"
    __table_args__ = (UniqueConstraint("route", "config_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    route: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    price_input_per_mtok: Mapped[float | None]
    price_output_per_mtok: Mapped[float | None]
    config_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    first_seen_at: Mapped[datetime] = mapped_column(default=_utcnow)


class RunRow(Base):
    """One replay of one eval set against one route for one scheduled slot.

    ``UNIQUE(route, eval_set_name, slot_key)`` is what makes each slot run once, even
    with two daemons on one database. The totals stay null until the run completes.
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("route", "eval_set_name", "slot_key"),
        CheckConstraint(_one_of("status", RunStatus), name="status"),
        Index("ix_runs_route_at", "route", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    route: Mapped[str] = mapped_column(String(200))
    route_snapshot_id: Mapped[int] = mapped_column(ForeignKey("route_snapshots.id"))
    eval_set_id: Mapped[int] = mapped_column(ForeignKey("eval_sets.id"))
    eval_set_name: Mapped[str] = mapped_column(String(200))
    slot_key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    judge_suspect: Mapped[bool] = mapped_column(default=False, server_default=false())
    partially_judged: Mapped[bool] = mapped_column(default=False, server_default=false())
    items_total: Mapped[int | None]
    results_total: Mapped[int | None]
    errors_total: Mapped[int | None]
    fallback_total: Mapped[int | None]
    score: Mapped[float | None]
    pass_rate: Mapped[float | None]
    error_rate: Mapped[float | None]
    p50_latency_ms: Mapped[float | None]
    p95_latency_ms: Mapped[float | None]
    p50_ttft_ms: Mapped[float | None]
    """Time to first token of the streamed calls that answered; null when none was streamed."""
    p95_ttft_ms: Mapped[float | None]
    cost_usd: Mapped[float | None]
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    judge_calls: Mapped[int | None]
    judge_calls_saved: Mapped[int | None]
    judge_tokens: Mapped[int | None]
    judge_cost_usd: Mapped[float | None]
    error_message: Mapped[str | None] = mapped_column(Text)


class ResultRow(Base):
    """One call to a route for one item and sample: the output and what it cost."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "item_id", "sample"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    eval_item_id: Mapped[int] = mapped_column(ForeignKey("eval_items.id"))
    item_id: Mapped[str] = mapped_column(String(200))
    sample: Mapped[int]
    output: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(50))
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    cost_usd: Mapped[float | None]
    latency_ms: Mapped[float]
    ttft_ms: Mapped[float | None]
    attempts: Mapped[int]
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    served_model: Mapped[str | None] = mapped_column(String(200))
    served_by_fallback: Mapped[bool] = mapped_column(default=False, server_default=false())
    response_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class ScoreRow(Base):
    """One scorer's verdict on one result; a null ``value`` means the scorer failed."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("result_id", "scorer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    scorer: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None]
    passed: Mapped[bool | None]
    weight: Mapped[float] = mapped_column(default=1.0, server_default=text("1"))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    judge_verdict_id: Mapped[int | None] = mapped_column(
        ForeignKey("judge_verdicts.id", ondelete="SET NULL")
    )


class JudgeVerdictRow(Base):
    """A cached judge verdict, keyed by everything that could change it."""

    __tablename__ = "judge_verdicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    judge: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    criterion: Mapped[str] = mapped_column(String(200))
    raw_score: Mapped[float | None]
    score: Mapped[float | None]
    reasoning: Mapped[str | None] = mapped_column(Text)
    samples: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    tokens_in: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    tokens_out: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    cost_usd: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class CanaryResultRow(Base):
    """The judge's verdict on a canary with a known answer, per run: judge drift."""

    __tablename__ = "canary_results"
    __table_args__ = (UniqueConstraint("run_id", "canary_index", "criterion"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    eval_set_id: Mapped[int] = mapped_column(ForeignKey("eval_sets.id"))
    canary_index: Mapped[int]
    criterion: Mapped[str] = mapped_column(String(200))
    expected: Mapped[float]
    observed: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(String(CANARY_ERROR_LENGTH))
    """Why the judge gave no verdict (``observed`` is None): a failed call with its error
    class, the budget, or a reply with no readable verdict. None when it gave one."""
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class JudgeSpendRow(Base):
    """What one judge spent on one day, checked against its daily budget."""

    __tablename__ = "judge_spend"

    judge: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    cost_usd: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    calls: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    budget_alerted: Mapped[bool] = mapped_column(default=False, server_default=false())
    """The day's ``judge.budget`` event was raised: it goes out once per judge and day."""


class IncidentRow(Base):
    """A detected drop on one route and metric, open until a run resolves it."""

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(_one_of("status", IncidentStatus), name="status"),
        Index("ix_incidents_route_status", "route", "status"),
        # Two processes detecting the same route at once must not both open an incident.
        Index(
            "uq_incidents_open_route_eval_set_name_metric",
            "route",
            "eval_set_name",
            "metric",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    route: Mapped[str] = mapped_column(String(200))
    eval_set_name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    detector: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    opening_run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    resolving_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    observed: Mapped[float]
    baseline_mean: Mapped[float | None]
    baseline_sd: Mapped[float | None]
    threshold: Mapped[float | None]
    p_value: Mapped[float | None]
    severity: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    healthy_streak: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """Healthy runs in a row since the last bad one; ``recover_runs`` of them resolve it."""
    last_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    """The latest run that was bad for this incident's metric."""
    notified_at: Mapped[datetime | None]
    """When people were last told (opened, or reminded); ``renotify_hours`` counts from it."""


class AlertStateRow(Base):
    """The current alerting state of one (route, metric), to notify on changes only."""

    __tablename__ = "alert_states"
    __table_args__ = (CheckConstraint(_one_of("state", AlertState), name="state"),)

    route: Mapped[str] = mapped_column(String(200), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime]
    last_notified_at: Mapped[datetime | None]
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))


class OutboxRow(Base):
    """An event waiting to be delivered to one target; ``delivery_id`` is its idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_one_of("status", OutboxStatus), name="status"),
        Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryAttemptRow(Base):
    """One try at delivering an outbox message, kept for the audit trail."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float]


class PolicyVersionRow(Base):
    """One version of a policy's active fallback chain, and who changed it and why."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy: Mapped[str] = mapped_column(String(200))
    version: Mapped[int]
    chain: Mapped[list[str]] = mapped_column(JSON)
    pins: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    demoted: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(50))
    reason: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)
    all_degraded: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Every configured route was degraded; the chain kept the least bad one."""


class SchedulerLeaseRow(Base):
    """A named lease that elects the one active scheduler among several daemons."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]


class ItemOutcomeRow(Base):
    """One item's outcome in one run: what the paired tests compare, item by item.

    Written with the run's totals when it completes. ``item_hash`` pairs an item with
    itself across eval-set versions, so unchanged items keep their history.
    """

    __tablename__ = "item_outcomes"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    item_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(200))
    weight: Mapped[float]
    critical: Mapped[bool]
    score: Mapped[float | None]
    passed: Mapped[bool | None]
    samples_scored: Mapped[int]
    samples_passed: Mapped[int]
    samples_errored: Mapped[int]


class DetectionRow(Base):
    """What detection concluded about one completed run, kept for status and the report."""

    __tablename__ = "detections"
    __table_args__ = (
        Index("ix_detections_route_eval_set_name_at", "route", "eval_set_name", "at"),
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    route: Mapped[str] = mapped_column(String(200))
    eval_set_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]
    known: Mapped[bool]
    """False while the baseline has too few runs: the ``unknown`` state."""
    baseline_runs: Mapped[int]
    paired_items: Mapped[int]
    observed: Mapped[float | None]
    baseline_mean: Mapped[float | None]
    baseline_sd: Mapped[float | None]
    lower_limit: Mapped[float | None]
    """The sigma rule's limit: ``mean - sigma * max(sd, floor)``."""
    p_value: Mapped[float | None]
    """The smallest quality p-value (count, weighted or graded test)."""
    cusum: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    in_incident: Mapped[list[str]] = mapped_column(JSON)
    """Metrics with an incident open during this run: left out of their baselines."""
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """Every detector's verdict, paging or not."""
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)


class PairwisePreferenceRow(Base):
    """The judge's comparison of an item's output in a run with its last good output.

    Asked in both orders (the baseline's output shown first, then today's first), so the
    judge's position bias cancels: ``preference`` is the side chosen both times, else
    ``tie``, and null with ``error`` set when an order gave no answer (or the judge's
    budget was spent). One row per run and item, so a run is never compared twice.
    """

    __tablename__ = "pairwise_preferences"
    __table_args__ = (
        UniqueConstraint("run_id", "item_hash"),
        CheckConstraint(_one_of("preference", PairwisePreference), name="preference"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    item_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    item_id: Mapped[str] = mapped_column(String(200))
    baseline_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    """The run whose output was the baseline: the item's last good output before this run."""
    today_score: Mapped[float]
    baseline_score: Mapped[float]
    """The item's mean score over the healthy runs before this one."""
    judge: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    preference: Mapped[str | None] = mapped_column(String(16))
    baseline_first: Mapped[str | None] = mapped_column(String(16))
    """The side preferred when the baseline's output was shown first (as A)."""
    today_first: Mapped[str | None] = mapped_column(String(16))
    """The side preferred when today's output was shown first (as A)."""
    baseline_first_answer: Mapped[str | None] = mapped_column(Text)
    """The judge's raw reply in the baseline-first order."""
    today_first_answer: Mapped[str | None] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    calls: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    tokens_in: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    tokens_out: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    cost_usd: Mapped[float] = mapped_column(default=0.0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_utcnow)
