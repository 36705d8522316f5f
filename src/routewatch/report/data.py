"""The report's data: bounded queries over the store, returned as plain dataclasses.

One report covers a window (an ISO week, or ``--since/--until`` days) in the config's
time zone, plus ``HISTORY_WEEKS`` before it for the score charts. Every query is bounded
by that window and by the routes' index on ``(route, at)``, so a year of history costs
no more than a week of it; the evidence of an incident reads only the few items that
moved most.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from operator import itemgetter
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, or_, select

from routewatch.config import Config
from routewatch.errors import UsageError
from routewatch.evalset import EvalSet
from routewatch.report.agreement import AgreementSection, load_agreement
from routewatch.status import ERRORING_RATE
from routewatch.store.detection import clip, input_text
from routewatch.store.pairwise import PreferenceCount, last_good_runs, preference_counts
from routewatch.store.queries import incident_facts
from routewatch.store.tables import (
    DetectionRow,
    EvalItemRow,
    IncidentRow,
    JudgeVerdictRow,
    PolicyVersionRow,
    ResultRow,
    RunRow,
    RunStatus,
    ScoreRow,
)

HISTORY_WEEKS = 8
"""Weeks before the report's window drawn in the score charts."""
HISTORY = timedelta(weeks=HISTORY_WEEKS)
EVIDENCE_ITEMS = 3
TEXT_CHARS = 1200
"""Longest model output, input or reference shown; the rest is cut with a mark."""
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """The report's period: ``[start, end)``, aware, with a label."""

    start: datetime
    end: datetime
    label: str
    slug: str
    """For the file name: ``2026-W47`` or ``2026-11-16_2026-11-22``."""


def week_window(week: str, timezone: str) -> Window:
    """The ISO week ``2026-W47`` (Monday 00:00 to Monday 00:00 in ``timezone``)."""
    match = _WEEK.match(week.strip())
    if not match:
        raise UsageError(f"--week {week!r} is not an ISO week like 2026-W47")
    try:
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise UsageError(f"--week {week!r}: {exc}") from None
    zone = ZoneInfo(timezone)
    start = datetime.combine(monday, time(), tzinfo=zone)
    end = datetime.combine(monday + timedelta(days=7), time(), tzinfo=zone)
    sunday = monday + timedelta(days=6)
    return Window(start=start, end=end, label=f"{week} ({span_label(monday, sunday)})", slug=week)


def span_label(first: date, last: date) -> str:
    """``Nov 16 \u2013 Nov 22, 2026``; both years when they differ (``Dec 28, 2026 \u2013 ...``)."""
    head = f"{first:%b %d}" if first.year == last.year else f"{first:%b %d, %Y}"
    return f"{head} \u2013 {last:%b %d, %Y}"


def days_window(since: date, until: date, timezone: str) -> Window:
    """The days ``since`` to ``until``, both included, in ``timezone``."""
    if until < since:
        raise UsageError(f"--until {until} is before --since {since}")
    zone = ZoneInfo(timezone)
    return Window(
        start=datetime.combine(since, time(), tzinfo=zone),
        end=datetime.combine(until + timedelta(days=1), time(), tzinfo=zone),
        label=f"{since:%b %d, %Y} \u2013 {until:%b %d, %Y}",
        slug=f"{since}_{until}",
    )


def previous_window(window: Window) -> Window:
    """The period of the same length that ends where ``window`` starts.

    The week before a week, the 30 days before 30 days.
    Both ends are in the window's time zone, and the subtraction is by the wall clock,
    so the week before a week that begins on a daylight-saving change is still Monday
    to Monday.
    """
    length = window.end.replace(tzinfo=None) - window.start.replace(tzinfo=None)
    zone = window.start.tzinfo
    start = (window.start.replace(tzinfo=None) - length).replace(tzinfo=zone)
    last = window.start.replace(tzinfo=None) - timedelta(days=1)
    label = span_label(start.date(), last.date())
    if _WEEK.match(window.slug):
        year, week, _ = start.date().isocalendar()
        label = f"{year}-W{week:02d} ({label})"
    return Window(start=start, end=window.start, label=label, slug=f"{start:%Y-%m-%d}")


def last_full_week(now: datetime, timezone: str) -> str:
    """The ISO week before the one ``now`` is in, e.g. ``2026-W47``."""
    local = now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=7)
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPoint:
    """One run, as charts and tables show it."""

    run_id: int
    at: datetime
    status: str
    score: float | None
    pass_rate: float | None
    error_rate: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    requests: int
    judge_calls: int
    judge_saved: int
    judge_cost_usd: float
    mean: float | None
    sd: float | None
    lower_limit: float | None
    state: str
    """``healthy``, ``degraded`` (inside an incident), ``unknown``, ``judge_suspect``,
    ``failed``."""
    in_window: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """A route and eval set over the report's window."""

    runs: int
    score: float | None
    pass_rate: float | None
    error_rate: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    tokens_per_run: float | None
    p50_ttft_ms: float | None = None
    """Time to first token over the streamed calls that answered; None without any."""
    cost_per_run: float | None
    cost_per_1k_requests: float | None
    usd_per_mtok: float | None
    judge_calls: int
    judge_saved: int
    judge_cost_usd: float
    baseline_mean: float | None
    lower_limit: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """One route and eval set: its runs (window and history) and the window's summary."""

    route: str
    eval_set: str
    model: str
    points: tuple[RunPoint, ...]
    summary: Summary
    previous: Summary | None = None
    """The same figures over the period of equal length just before the window; None
    when no run completed in it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """An item that moved most: today's output beside the one before the incident."""

    item_id: str
    baseline: float | None
    today: float | None
    input: str | None
    reference: str | None
    output: str | None
    before_output: str | None
    before_run_id: int | None
    reasoning: tuple[tuple[str, float | None, str], ...] = ()
    """The judge's verdicts on today's output: (criterion, score 0..1, reasoning)."""
    failed_checks: tuple[tuple[str, str], ...] = ()
    """The checks today's output failed: (check, why), e.g. ``("contains #1", ...)``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorVerdict:
    """One detector's case against a run: its p-value and the limit it passed."""

    detector: str
    p_value: float | None
    threshold: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentView:
    """An incident opened, open or resolved in the window."""

    id: int
    route: str
    eval_set: str
    metric: str
    detector: str
    status: str
    opened_at: datetime
    resolved_at: datetime | None
    observed: float
    baseline_mean: float | None
    threshold: float | None
    p_value: float | None
    opening_run_id: int
    resolved_by: str | None = None
    """``routewatch`` (healthy runs), ``cli`` or ``api`` (by hand); None while open."""
    resolution_reason: str | None = None
    """The reason given when it was resolved by hand."""
    also_paged: tuple[DetectorVerdict, ...] = ()
    """The other detectors that paged on this metric in the opening run."""
    evidence: tuple[Evidence, ...] = ()
    pairwise: PreferenceCount | None = None
    """Pairwise mode's comparisons on the opening run: how often the judge preferred the
    item's last good output to the one that fell."""

    @property
    def verdicts(self) -> tuple[DetectorVerdict, ...]:
        """Every detector that paged on the metric when it opened, its own first."""
        own = DetectorVerdict(
            detector=self.detector, p_value=self.p_value, threshold=self.threshold
        )
        return (own, *self.also_paged)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyChange:
    """A policy version written in the window."""

    policy: str
    version: int
    at: datetime
    chain: tuple[str, ...]
    demoted: tuple[str, ...]
    actor: str
    reason: str
    incident_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """Everything the report shows."""

    window: Window
    generated_at: datetime
    timezone: str
    sections: tuple[Section, ...]
    previous_window: Window
    """The period of equal length just before ``window``, which ``Section.previous``
    covers."""
    incidents: tuple[IncidentView, ...]
    policy_changes: tuple[PolicyChange, ...]
    notes: tuple[str, ...] = field(default=())
    agreement: AgreementSection | None = None
    """Judge agreement with people, week by week; None when no eval set is judged."""


def load_report(
    engine: Engine,
    config: Config,
    window: Window,
    *,
    now: datetime | None = None,
    eval_sets: Mapping[str, EvalSet] | None = None,
) -> ReportData:
    """Read what the report for ``window`` shows, for the configured routes.

    ``eval_sets`` give the ``human_score`` labels for judge agreement; without them
    they are read from the config's ``eval_dir``.
    """
    previous = previous_window(window)
    history_start = min(window.start - HISTORY, previous.start)
    with engine.connect() as conn:
        runs = _runs(conn, list(config.routes), history_start, window.end)
        detections = _detections(conn, [r.id for r in runs])
        latencies = _latencies(
            conn,
            [
                r.id
                for r in runs
                if r.status == RunStatus.completed and previous.start <= r.at < window.end
            ],
            {r.id: (r.route, r.eval_set_name, r.at >= window.start) for r in runs},
        )
        sections = _sections(config, runs, detections, window, previous, latencies)
        incidents = _incidents(conn, list(config.routes), window)
        changes = _policy_changes(conn, list(config.policies), window)
        agreement = load_agreement(conn, config, window.end, eval_sets)
    notes = []
    if not any(s.summary.runs for s in sections):
        notes.append("No run completed in this period.")
    return ReportData(
        window=window,
        generated_at=now or datetime.now(UTC),
        timezone=config.timezone,
        sections=tuple(sections),
        previous_window=previous,
        incidents=tuple(incidents),
        policy_changes=tuple(changes),
        notes=tuple(notes),
        agreement=agreement,
    )


def _runs(conn: Connection, routes: list[str], start: datetime, end: datetime) -> list[Any]:
    if not routes:
        return []
    return list(
        conn.execute(
            select(RunRow.__table__)
            .where(
                RunRow.route.in_(routes),
                RunRow.at >= start,
                RunRow.at < end,
                RunRow.status.in_([RunStatus.completed, RunStatus.failed]),
            )
            .order_by(RunRow.route, RunRow.eval_set_name, RunRow.at)
        ).all()
    )


def _detections(conn: Connection, run_ids: list[int]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for chunk in _chunks(run_ids, 900):
        for d in conn.execute(
            select(
                DetectionRow.run_id,
                DetectionRow.known,
                DetectionRow.baseline_mean,
                DetectionRow.baseline_sd,
                DetectionRow.lower_limit,
                DetectionRow.in_incident,
            ).where(DetectionRow.run_id.in_(chunk))
        ):
            out[d.run_id] = d
    return out


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _state(run: Any, detection: Any) -> str:
    if run.status == RunStatus.failed:
        return "failed"
    if (run.error_rate or 0.0) >= ERRORING_RATE:
        # As `status` says: most calls failed, so its score says little.
        return "erroring"
    if run.judge_suspect:
        return "judge_suspect"
    if detection is None or not detection.known:
        return "unknown"
    return "degraded" if detection.in_incident else "healthy"


@dataclass(slots=True)
class Timings:
    """The answered calls' latencies and, of those streamed, times to first token."""

    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


def _latencies(
    conn: Connection, run_ids: list[int], keys: dict[int, tuple[str, str, bool]]
) -> dict[tuple[str, str, bool], Timings]:
    """Timings of the answered calls of ``run_ids``, per (route, eval set, in window)."""
    out: dict[tuple[str, str, bool], Timings] = defaultdict(Timings)
    for chunk in _chunks(run_ids, 900):
        # Ordered by run and fetched whole: a week is 10^4-10^5 rows, and row-by-row
        # iteration with a dict lookup each took most of the report's time.
        rows = conn.execute(
            select(ResultRow.run_id, ResultRow.latency_ms, ResultRow.ttft_ms)
            .where(ResultRow.run_id.in_(chunk), ResultRow.error_class.is_(None))
            .order_by(ResultRow.run_id)
        ).all()
        for run_id, found in groupby(rows, key=itemgetter(0)):
            timings = out[keys[run_id]]
            for _, latency, ttft in found:
                timings.latency.append(latency)
                if ttft is not None:
                    timings.ttft.append(ttft)
    return out


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _sections(
    config: Config,
    runs: Sequence[Any],
    detections: dict[int, Any],
    window: Window,
    previous: Window,
    latencies: dict[tuple[str, str, bool], Timings],
) -> list[Section]:
    by_key: dict[tuple[str, str], list[RunPoint]] = defaultdict(list)
    for r in runs:
        d = detections.get(r.id)
        by_key[(r.route, r.eval_set_name)].append(
            RunPoint(
                run_id=r.id,
                at=r.at,
                status=r.status,
                score=r.score,
                pass_rate=r.pass_rate,
                error_rate=r.error_rate,
                p50_latency_ms=r.p50_latency_ms,
                p95_latency_ms=r.p95_latency_ms,
                tokens_in=r.tokens_in or 0,
                tokens_out=r.tokens_out or 0,
                cost_usd=r.cost_usd or 0.0,
                requests=r.results_total or 0,
                judge_calls=r.judge_calls or 0,
                judge_saved=r.judge_calls_saved or 0,
                judge_cost_usd=r.judge_cost_usd or 0.0,
                mean=d.baseline_mean if d else None,
                sd=d.baseline_sd if d else None,
                lower_limit=d.lower_limit if d else None,
                state=_state(r, d),
                in_window=window.start <= r.at < window.end,
            )
        )
    sections = []
    for name, route in config.routes.items():
        for eval_set in route.evals:
            points = by_key.get((name, eval_set), [])
            before = [
                p
                for p in points
                if previous.start <= p.at < previous.end and p.status == RunStatus.completed
            ]
            sections.append(
                Section(
                    route=name,
                    eval_set=eval_set,
                    model=route.model,
                    points=tuple(p for p in points if p.at >= window.start - HISTORY),
                    summary=_summary(
                        [p for p in points if p.in_window],
                        latencies.get((name, eval_set, True), Timings()),
                    ),
                    previous=(
                        _summary(before, latencies.get((name, eval_set, False), Timings()))
                        if before
                        else None
                    ),
                )
            )
    return sections


def _avg(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def _summary(points: Sequence[RunPoint], timings: Timings) -> Summary:
    """The window's figures; p50/p95 are over every answered call of the window, pooled."""
    done = [p for p in points if p.status == RunStatus.completed]
    tokens = sum(p.tokens_in + p.tokens_out for p in done)
    cost = sum(p.cost_usd for p in done)
    requests = sum(p.requests for p in done)
    last = next((p for p in reversed(done) if p.mean is not None), None)
    return Summary(
        runs=len(points),
        score=_avg(p.score for p in done),
        pass_rate=_avg(p.pass_rate for p in done),
        error_rate=_avg(p.error_rate for p in done),
        p50_latency_ms=_percentile(timings.latency, 0.5),
        p95_latency_ms=_percentile(timings.latency, 0.95),
        p50_ttft_ms=_percentile(timings.ttft, 0.5),
        tokens_per_run=tokens / len(done) if done else None,
        cost_per_run=cost / len(done) if done else None,
        cost_per_1k_requests=cost / requests * 1000 if requests else None,
        usd_per_mtok=cost / tokens * 1_000_000 if tokens else None,
        judge_calls=sum(p.judge_calls for p in points),
        judge_saved=sum(p.judge_saved for p in points),
        judge_cost_usd=sum(p.judge_cost_usd for p in points),
        baseline_mean=last.mean if last else None,
        lower_limit=last.lower_limit if last else None,
    )


def _incidents(conn: Connection, routes: list[str], window: Window) -> list[IncidentView]:
    if not routes:
        return []
    rows = conn.execute(
        select(IncidentRow.__table__)
        .where(
            IncidentRow.route.in_(routes),
            IncidentRow.opened_at < window.end,
            or_(IncidentRow.resolved_at.is_(None), IncidentRow.resolved_at >= window.start),
        )
        .order_by(IncidentRow.opened_at, IncidentRow.id)
    ).all()
    pairwise = preference_counts(conn, [row.opening_run_id for row in rows])
    paged = _paged(conn, [row.opening_run_id for row in rows])
    out = []
    for row in rows:
        worst = (row.detail or {}).get("finding", {}).get("worst_items", [])[:EVIDENCE_ITEMS]
        facts = incident_facts(row)
        out.append(
            IncidentView(
                id=row.id,
                route=row.route,
                eval_set=row.eval_set_name,
                metric=row.metric,
                detector=row.detector,
                status=row.status,
                opened_at=row.opened_at,
                resolved_at=row.resolved_at,
                observed=row.observed,
                baseline_mean=row.baseline_mean,
                threshold=row.threshold,
                p_value=row.p_value,
                opening_run_id=row.opening_run_id,
                resolved_by=facts.resolved_by,
                resolution_reason=facts.resolution_reason,
                also_paged=_also_paged(row, paged.get(row.opening_run_id, [])),
                evidence=tuple(_evidence(conn, row, worst)),
                pairwise=pairwise.get(row.opening_run_id),
            )
        )
    return out


def _paged(conn: Connection, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The findings that paged in each run, as its detection stored them."""
    out: dict[int, list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(set(run_ids)), 900):
        for d in conn.execute(
            select(DetectionRow.run_id, DetectionRow.findings).where(DetectionRow.run_id.in_(chunk))
        ):
            out[d.run_id] = [f for f in d.findings or [] if f.get("paged")]
    return out


def _also_paged(incident: Any, paged: list[dict[str, Any]]) -> tuple[DetectorVerdict, ...]:
    """The detectors other than the incident's own that paged on its metric."""
    return tuple(
        DetectorVerdict(
            detector=f["detector"], p_value=f.get("p_value"), threshold=f.get("threshold")
        )
        for f in paged
        if f.get("metric") == incident.metric and f.get("detector") != incident.detector
    )


def _evidence(conn: Connection, incident: Any, worst: list[dict[str, Any]]) -> list[Evidence]:
    ids = [w["item_id"] for w in worst if "item_id" in w]
    if not ids:
        return []
    run = conn.execute(
        select(RunRow.id, RunRow.at, RunRow.eval_set_id).where(RunRow.id == incident.opening_run_id)
    ).one()
    before = last_good_runs(
        conn,
        route=incident.route,
        eval_set_name=incident.eval_set_name,
        before=run.at,
        item_ids=ids,
    )
    items = {
        r.item_id: r.definition
        for r in conn.execute(
            select(EvalItemRow.item_id, EvalItemRow.definition).where(
                EvalItemRow.eval_set_id == run.eval_set_id, EvalItemRow.item_id.in_(ids)
            )
        )
    }
    run_ids = [run.id, *sorted(set(before.values()))]
    outputs: dict[tuple[int, str], tuple[int, str | None]] = {}
    for r in conn.execute(
        select(
            ResultRow.id,
            ResultRow.run_id,
            ResultRow.item_id,
            ResultRow.output,
            ResultRow.error_class,
        )
        .where(ResultRow.run_id.in_(run_ids), ResultRow.item_id.in_(ids))
        .order_by(ResultRow.sample)
    ):
        outputs.setdefault(
            (r.run_id, r.item_id), (r.id, r.output if r.output is not None else r.error_class)
        )
    today_ids = [v[0] for k, v in outputs.items() if k[0] == run.id]
    reasoning = _reasoning(conn, today_ids)
    failed = _failed_checks(conn, today_ids)
    out = []
    for w in worst:
        item_id = w.get("item_id")
        if item_id is None:
            continue
        definition = items.get(item_id) or {}
        today = outputs.get((run.id, item_id))
        before_run = before.get(item_id)
        prior = outputs.get((before_run, item_id)) if before_run is not None else None
        out.append(
            Evidence(
                item_id=item_id,
                baseline=w.get("baseline"),
                today=w.get("today"),
                input=_clip(input_text(definition)),
                reference=_clip(definition.get("reference")),
                output=_clip(today[1] if today else None),
                before_output=_clip(prior[1] if prior else None),
                before_run_id=before_run,
                reasoning=tuple(reasoning.get(today[0], ())) if today else (),
                failed_checks=tuple(failed.get(today[0], ())) if today else (),
            )
        )
    return out


def _reasoning(
    conn: Connection, result_ids: list[int]
) -> dict[int, list[tuple[str, float | None, str]]]:
    out: dict[int, list[tuple[str, float | None, str]]] = defaultdict(list)
    if not result_ids:
        return out
    query = (
        select(
            ScoreRow.result_id,
            JudgeVerdictRow.criterion,
            JudgeVerdictRow.score,
            JudgeVerdictRow.reasoning,
        )
        .join(JudgeVerdictRow, and_(ScoreRow.judge_verdict_id == JudgeVerdictRow.id))
        .where(ScoreRow.result_id.in_(result_ids))
        .order_by(JudgeVerdictRow.criterion)
    )
    for r in conn.execute(query):
        out[r.result_id].append((r.criterion, r.score, _clip(r.reasoning) or ""))
    return out


def _failed_checks(conn: Connection, result_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """Per result, the checks it failed, as ``("contains #1", why)`` in the item's order."""
    out: dict[int, list[tuple[str, str]]] = defaultdict(list)
    if not result_ids:
        return out
    query = select(ScoreRow.result_id, ScoreRow.scorer, ScoreRow.detail).where(
        ScoreRow.result_id.in_(result_ids),
        ScoreRow.scorer.like("check:%"),
        ScoreRow.passed.is_(False),
    )
    rows = sorted(conn.execute(query), key=lambda r: (r.result_id, _check_order(r.scorer)))
    for r in rows:
        _, kind, index = r.scorer.split(":", 2)
        why = (r.detail or {}).get("detail") or "failed"
        out[r.result_id].append((f"{kind} #{int(index) + 1}", _clip(why) or ""))
    return out


def _check_order(scorer: str) -> int:
    """``check:contains:3`` -> 3, for sorting a result's checks in the item's order."""
    tail = scorer.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _clip(value: Any) -> str | None:
    return clip(value, TEXT_CHARS)


def _policy_changes(conn: Connection, policies: list[str], window: Window) -> list[PolicyChange]:
    if not policies:
        return []
    rows = conn.execute(
        select(PolicyVersionRow.__table__)
        .where(
            PolicyVersionRow.policy.in_(policies),
            PolicyVersionRow.created_at >= window.start,
            PolicyVersionRow.created_at < window.end,
        )
        .order_by(PolicyVersionRow.created_at, PolicyVersionRow.version)
    ).all()
    return [
        PolicyChange(
            policy=r.policy,
            version=r.version,
            at=r.created_at,
            chain=tuple(r.chain),
            demoted=tuple(d["route"] for d in r.demoted),
            actor=r.actor,
            reason=r.reason,
            incident_id=r.incident_id,
        )
        for r in rows
    ]
