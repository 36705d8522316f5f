"""Detection's reads and writes: run histories in, findings, incidents and events out.

``load_history`` turns stored runs into ``detect.RunRecord`` values (newest first).
``record_detection`` writes what one run's detection concluded in one transaction: the
``detections`` row, incident changes and the outbox events that announce them, so an
incident never exists without its alert, nor an alert without its incident. A run is
detected once: a second call for the same run changes nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, CursorResult, Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from routewatch.config import Policy
from routewatch.detect.baseline import ItemOutcome, RunRecord
from routewatch.detect.findings import Candidate, Decision, Metric
from routewatch.incidents import OpenIncident, Transition
from routewatch.policy.engine import action_sentence, decide_chain
from routewatch.store.outbox import enqueue
from routewatch.store.policies import policies_of, reconcile, troubles
from routewatch.store.tables import (
    CanaryResultRow,
    DetectionRow,
    EvalItemRow,
    EvalSetRow,
    IncidentRow,
    IncidentStatus,
    ItemOutcomeRow,
    ResultRow,
    RunRow,
    RunStatus,
)

HISTORY_SLACK = 60
"""Runs fetched beyond the history detection needs (``detect.baseline.history_depth``), so
it can reach back past runs left out for an open incident; an incident longer than this
shortens the history."""


def load_history(
    engine: Engine, *, route: str, eval_set_name: str, before: datetime, limit: int
) -> list[RunRecord]:
    """Completed runs of (route, eval set) with ``at`` before ``before``, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunRow.__table__)
            .where(
                RunRow.route == route,
                RunRow.eval_set_name == eval_set_name,
                RunRow.status == RunStatus.completed,
                RunRow.at < before,
            )
            .order_by(RunRow.at.desc())
            .limit(limit)
        ).all()
        return _records(conn, rows)


def load_run(engine: Engine, run_id: int) -> RunRecord | None:
    """One completed run as a ``RunRecord``; None when it is not completed."""
    with engine.connect() as conn:
        row = conn.execute(
            select(RunRow.__table__).where(
                RunRow.id == run_id, RunRow.status == RunStatus.completed
            )
        ).one_or_none()
        if row is None:
            return None
        return _records(conn, [row])[0]


def _records(conn: Connection, rows: Sequence[Any]) -> list[RunRecord]:
    ids = [r.id for r in rows]
    if not ids:
        return []
    items: dict[int, dict[str, ItemOutcome]] = {i: {} for i in ids}
    outcomes = select(ItemOutcomeRow.__table__).where(ItemOutcomeRow.run_id.in_(ids))
    for o in conn.execute(outcomes):
        items[o.run_id][o.item_hash] = ItemOutcome(
            item_hash=o.item_hash,
            item_id=o.item_id,
            weight=o.weight,
            critical=o.critical,
            score=o.score,
            passed=o.passed,
            samples_scored=o.samples_scored,
            samples_passed=o.samples_passed,
            samples_errored=o.samples_errored,
        )
    detected = {
        d.run_id: d
        for d in conn.execute(
            select(DetectionRow.run_id, DetectionRow.in_incident, DetectionRow.cusum).where(
                DetectionRow.run_id.in_(ids)
            )
        )
    }
    out = []
    for r in rows:
        d = detected.get(r.id)
        out.append(
            RunRecord(
                run_id=r.id,
                at=r.at,
                items=items[r.id],
                results_total=r.results_total or 0,
                errors_total=r.errors_total or 0,
                p95_latency_ms=r.p95_latency_ms,
                cost_usd=r.cost_usd,
                judge_suspect=r.judge_suspect,
                incident_metrics=frozenset(d.in_incident) if d else frozenset(),
                cusum=d.cusum if d else 0.0,
            )
        )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Undetected:
    """A completed run whose detection was never recorded."""

    route: str
    eval_set: str
    run_id: int
    at: datetime


def undetected_runs(engine: Engine, routes: Sequence[str], *, limit: int = 500) -> list[Undetected]:
    """Completed runs of ``routes`` with item outcomes but no detection, oldest first.

    A process that stopped between completing a run and detecting it, or a cycle in which
    another run failed, leaves these; runs from before per-item outcomes were stored
    (revision 0002) have none and are not detectable, so they are left out.
    """
    if not routes:
        return []
    detected = select(DetectionRow.run_id).where(DetectionRow.run_id == RunRow.id).exists()
    outcomes = select(ItemOutcomeRow.run_id).where(ItemOutcomeRow.run_id == RunRow.id).exists()
    with engine.connect() as conn:
        rows = conn.execute(
            select(RunRow.id, RunRow.route, RunRow.eval_set_name, RunRow.at)
            .where(
                RunRow.route.in_(list(routes)),
                RunRow.status == RunStatus.completed,
                ~detected,
                outcomes,
            )
            .order_by(RunRow.at, RunRow.id)
            .limit(limit)
        ).all()
    return [Undetected(route=r.route, eval_set=r.eval_set_name, run_id=r.id, at=r.at) for r in rows]


def already_detected(engine: Engine, run_id: int) -> bool:
    """Whether detection has already been recorded for ``run_id``."""
    with engine.connect() as conn:
        found = conn.execute(select(DetectionRow.run_id).where(DetectionRow.run_id == run_id))
        return found.first() is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDetection:
    """What was recorded when a run was detected."""

    at: datetime
    """The run's logical time."""
    known: bool
    """Whether it had a baseline (else the route was still learning)."""
    paged: frozenset[str]
    """Metrics its findings paged on."""


def stored_detection(engine: Engine, run_id: int) -> StoredDetection | None:
    """What detection recorded for ``run_id``; None when it was not detected yet."""
    with engine.connect() as conn:
        row = conn.execute(
            select(DetectionRow.at, DetectionRow.known, DetectionRow.findings).where(
                DetectionRow.run_id == run_id
            )
        ).one_or_none()
    if row is None:
        return None
    paged = frozenset(str(f["metric"]) for f in row.findings or [] if f.get("paged"))
    return StoredDetection(at=row.at, known=bool(row.known), paged=paged)


def detected_after(engine: Engine, *, route: str, eval_set_name: str, at: datetime) -> bool:
    """Whether a run of (route, eval set) later than ``at`` has been detected already."""
    with engine.connect() as conn:
        found = conn.execute(
            select(DetectionRow.run_id)
            .where(
                DetectionRow.route == route,
                DetectionRow.eval_set_name == eval_set_name,
                DetectionRow.at > at,
            )
            .limit(1)
        )
        return found.first() is not None


def open_incidents(engine: Engine, *, route: str, eval_set_name: str) -> list[OpenIncident]:
    """The open incidents of (route, eval set), one per metric."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(IncidentRow.id, IncidentRow.metric, IncidentRow.healthy_streak).where(
                IncidentRow.route == route,
                IncidentRow.eval_set_name == eval_set_name,
                IncidentRow.status == IncidentStatus.open,
            )
        ).all()
    return [OpenIncident(id=r.id, metric=r.metric, healthy_streak=r.healthy_streak) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What ``record_detection`` wrote."""

    written: bool
    """False when the run had been detected before: nothing was changed."""
    opened: tuple[int, ...] = ()
    resolved: tuple[int, ...] = ()
    events: int = 0
    policy_notes: tuple[str, ...] = ()
    """Policy changes made (``auto``) or suggested (``suggest``, when an incident opened or
    resolved), one sentence each, prefixed with the policy's name."""


def record_detection(
    engine: Engine,
    *,
    run: RunRecord,
    route: str,
    eval_set_name: str,
    decision: Decision,
    transition: Transition,
    targets: Sequence[str],
    now: datetime,
    policies: Mapping[str, Policy] | None = None,
    renotify_hours: float | None = None,
    judge_drift: bool = False,
) -> Recorded:
    """Write one run's detection, incident changes and outbox events in one transaction.

    Args:
        engine: The database.
        run: The run that was judged.
        route: Its route.
        eval_set_name: Its eval set.
        decision: ``detect.findings.decide``'s verdict on it.
        transition: ``incidents.advance``'s changes for it.
        targets: Alert targets (``slack``, ``webhook:0``, ...): one outbox row per event
            and target.
        now: Wall-clock time of the write.
        policies: The configured policies; those whose chain holds ``route`` are
            reconciled in the same transaction, unless the run is ``judge_suspect``.
        renotify_hours: Remind of an incident still open this long after the last notice.
        judge_drift: Raise ``judge.drift`` (the run is the first ``judge_suspect`` one).
    """
    ev = decision.evaluation
    rule = ev.sigma
    quality_p = [
        c.p_value for c in ev.candidates if c.metric == Metric.score and c.p_value is not None
    ]
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(DetectionRow).values(
                    run_id=run.run_id,
                    route=route,
                    eval_set_name=eval_set_name,
                    at=run.at,
                    known=ev.known,
                    baseline_runs=ev.baseline_runs,
                    paired_items=ev.paired_items,
                    observed=rule.observed if rule else None,
                    baseline_mean=rule.mean if rule else None,
                    baseline_sd=rule.sd if rule else None,
                    lower_limit=rule.lower_limit if rule else None,
                    p_value=min(quality_p) if quality_p else None,
                    cusum=0.0 if Metric.score in transition.open_after else ev.cusum,
                    in_incident=sorted(transition.in_incident),
                    findings=[
                        candidate_json(c, paged=c in decision.findings) for c in ev.candidates
                    ],
                    created_at=now,
                )
            )
            opened: list[int] = []
            bodies: list[dict[str, Any]] = []
            for finding in transition.opened:
                incident_id = conn.execute(
                    insert(IncidentRow)
                    .values(
                        route=route,
                        eval_set_name=eval_set_name,
                        metric=finding.metric,
                        detector=finding.detector.value,
                        status=IncidentStatus.open,
                        opened_at=run.at,
                        opening_run_id=run.run_id,
                        last_run_id=run.run_id,
                        observed=finding.observed,
                        baseline_mean=finding.baseline_mean,
                        baseline_sd=finding.baseline_sd,
                        threshold=finding.threshold,
                        p_value=finding.p_value,
                        severity="page",
                        detail={"finding": candidate_json(finding, paged=True)},
                        healthy_streak=0,
                        notified_at=run.at,
                    )
                    .returning(IncidentRow.id)
                ).scalar_one()
                opened.append(incident_id)
                bodies.append(
                    event_body("incident.opened", route, eval_set_name, run, finding, incident_id)
                )
            for incident_id in transition.attached:
                _still_open(
                    incident_id,
                    conn.execute(
                        update(IncidentRow)
                        .where(_open(incident_id))
                        .values(healthy_streak=0, last_run_id=run.run_id)
                    ),
                )
            if renotify_hours is not None:
                bodies += _reminders(
                    conn,
                    route,
                    eval_set_name,
                    run,
                    ev.candidates,
                    renotify_hours,
                    resolving=set(transition.resolved),
                )
            for incident_id, streak in transition.recovering:
                _still_open(
                    incident_id,
                    conn.execute(
                        update(IncidentRow).where(_open(incident_id)).values(healthy_streak=streak)
                    ),
                )
            for incident_id in transition.resolved:
                row = conn.execute(
                    select(IncidentRow.__table__).where(IncidentRow.id == incident_id)
                ).one()
                done = conn.execute(
                    update(IncidentRow)
                    .where(_open(incident_id))
                    .values(
                        status=IncidentStatus.resolved,
                        resolved_at=run.at,
                        resolving_run_id=run.run_id,
                        healthy_streak=row.healthy_streak + 1,
                    )
                )
                _still_open(incident_id, done)
                current = _current(ev.candidates, row.metric)
                bodies.append(
                    {
                        **event_body(
                            "incident.resolved", route, eval_set_name, run, current, incident_id
                        ),
                        "metric": row.metric,
                        "detector": row.detector,
                        "resolved_by": "routewatch",
                        "reason": f"{row.healthy_streak + 1} healthy run(s) in a row",
                    }
                )
            actions: list[dict[str, Any]] = []
            policy_events: list[tuple[dict[str, Any], list[str]]] = []
            if policies and not run.judge_suspect:
                actions = apply_policies(
                    conn,
                    route,
                    policies,
                    targets,
                    policy_events,
                    incident_id=transition.resolved[0] if transition.resolved else None,
                    now=run.at,
                    run_id=run.run_id,
                )
            events = 0
            for body in bodies:
                body["worst_items"] = evidence(conn, run.run_id, body["worst_items"])
                body["policy_actions"] = actions
                events += enqueue(conn, body, targets, now)
            for body, to in policy_events:
                events += enqueue(conn, body, to, now)
            if judge_drift:
                events += enqueue(
                    conn, judge_drift_body(conn, route, eval_set_name, run), targets, now
                )
    except IntegrityError:
        if already_detected(engine, run.run_id):
            return Recorded(written=False)
        raise
    notes = tuple(
        f"policy {a['policy']}: {a['action']}"
        for a in actions
        if a["changed"] or (a["mode"] == "suggest" and (opened or transition.resolved))
    )
    return Recorded(
        written=True,
        opened=tuple(opened),
        resolved=transition.resolved,
        events=events,
        policy_notes=notes,
    )


class IncidentChanged(Exception):
    """An incident the run's transition was decided on is no longer open.

    It was resolved by hand since the run read it. Nothing was written: read the
    incidents again and decide once more.
    """

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"incident #{incident_id} was resolved while the run was detected")
        self.incident_id = incident_id


def _open(incident_id: int) -> ColumnElement[bool]:
    return and_(IncidentRow.id == incident_id, IncidentRow.status == IncidentStatus.open)


def _still_open(incident_id: int, updated: CursorResult[Any]) -> None:
    """Raise ``IncidentChanged`` when an update of an open incident found none.

    Raised inside the run's detection transaction, it rolls all of it back.
    """
    if updated.rowcount == 0:
        raise IncidentChanged(incident_id)


def _current(candidates: Sequence[Candidate], metric: str) -> Candidate | None:
    """The candidate that best describes ``metric`` on the resolving run."""
    for c in candidates:
        if c.metric == metric and c.p_value is not None:
            return c
    return next((c for c in candidates if c.metric == metric), None)


def candidate_json(c: Candidate, *, paged: bool) -> dict[str, Any]:
    """A candidate as stored in ``detections.findings`` and incident details."""
    return {
        "metric": c.metric,
        "detector": c.detector.value,
        "observed": _num(c.observed),
        "baseline_mean": _num(c.baseline_mean),
        "baseline_sd": _num(c.baseline_sd),
        "threshold": _num(c.threshold),
        "p_value": _num(c.p_value),
        "fired": c.fired,
        "effect_ok": c.effect_ok,
        "pages": c.pages,
        "paged": paged,
        "worst_items": [asdict(w) for w in c.worst_items],
    }


def event_body(
    event: str,
    route: str,
    eval_set_name: str,
    run: RunRecord,
    finding: Candidate | None,
    incident_id: int,
) -> dict[str, Any]:
    """The webhook body of DESIGN.md for an incident event."""
    return {
        "event": event,
        "id": str(uuid.uuid4()),
        "at": run.at.isoformat(),
        "route": route,
        "eval_set": eval_set_name,
        "incident_id": incident_id,
        "metric": finding.metric if finding else None,
        "observed": _num(finding.observed) if finding else None,
        "baseline_mean": _num(finding.baseline_mean) if finding else None,
        "baseline_sd": _num(finding.baseline_sd) if finding else None,
        "threshold": _num(finding.threshold) if finding else None,
        "detector": finding.detector.value if finding else None,
        "p_value": _num(finding.p_value) if finding else None,
        "run_id": run.run_id,
        "worst_items": [asdict(w) for w in finding.worst_items] if finding else [],
    }


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


EXCERPT_CHARS = 500
"""Evidence kept per text in an event; alerts shorten it further for their medium."""


def evidence(
    conn: Connection, run_id: int, worst: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``worst_items`` with each item's input, reference and this run's output (first sample)."""
    ids = [w["item_id"] for w in worst]
    if not ids:
        return []
    run = conn.execute(select(RunRow.eval_set_id).where(RunRow.id == run_id)).one()
    items = {
        r.item_id: r.definition
        for r in conn.execute(
            select(EvalItemRow.item_id, EvalItemRow.definition).where(
                EvalItemRow.eval_set_id == run.eval_set_id, EvalItemRow.item_id.in_(ids)
            )
        )
    }
    outputs: dict[str, str | None] = {}
    for r in conn.execute(
        select(ResultRow.item_id, ResultRow.output, ResultRow.error_class)
        .where(ResultRow.run_id == run_id, ResultRow.item_id.in_(ids))
        .order_by(ResultRow.sample)
    ):
        outputs.setdefault(r.item_id, r.output if r.output is not None else r.error_class)
    return [
        {
            **w,
            "input": clip(input_text(items.get(w["item_id"]))),
            "reference": clip((items.get(w["item_id"]) or {}).get("reference")),
            "output": clip(outputs.get(w["item_id"])),
        }
        for w in worst
    ]


def input_text(definition: Mapping[str, Any] | None) -> str | None:
    """A stored item's prompt as text: its ``input``, or the last user message."""
    if not definition:
        return None
    if definition.get("input") is not None:
        return str(definition["input"])
    messages = definition.get("messages") or []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else None


def clip(value: Any, limit: int = EXCERPT_CHARS) -> str | None:
    """``value`` as text cut at ``limit`` characters (with a mark); None stays None."""
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def apply_policies(
    conn: Connection,
    route: str,
    policies: Mapping[str, Policy],
    targets: Sequence[str],
    deferred: list[tuple[dict[str, Any], list[str]]],
    *,
    incident_id: int | None,
    now: datetime,
    run_id: int | None,
    actor: str = "routewatch",
    reason: str | None = None,
    names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Reconcile the route's policies; what each did, for the incident events.

    ``incident_id`` is an incident just resolved, which a restored route owes its return
    to; ``actor`` and ``reason`` are recorded with any new version. ``names``: these
    policies instead of those whose configured chain holds ``route``.
    """
    actions = []
    for name in policies_of(route, policies) if names is None else names:
        policy = policies[name]
        done = reconcile(
            conn,
            name=name,
            policy=policy,
            alert_targets=targets,
            now=now,
            actor=actor,
            reason=reason,
            route=route,
            run_id=run_id,
            incident_id=incident_id,
            deferred=deferred,
        )
        auto = policy.mode == "auto"
        decision = done.decision
        if not auto:
            decision = decide_chain(
                policy.chain, troubles(conn, policy.chain), auto=True, pins=decision.pins
            )
        actions.append(
            {
                "policy": name,
                "mode": policy.mode,
                "action": action_sentence(route, done.before, decision, auto=auto),
                "version": done.version,
                "changed": done.version is not None and done.before != done.decision.chain,
            }
        )
    return actions


def _reminders(
    conn: Connection,
    route: str,
    eval_set_name: str,
    run: RunRecord,
    candidates: Sequence[Candidate],
    renotify_hours: float,
    resolving: set[int],
) -> list[dict[str, Any]]:
    """``incident.reminder`` for open incidents last notified ``renotify_hours`` ago or more."""
    out = []
    rows = conn.execute(
        select(IncidentRow.__table__).where(
            IncidentRow.route == route,
            IncidentRow.eval_set_name == eval_set_name,
            IncidentRow.status == IncidentStatus.open,
        )
    ).all()
    for row in rows:
        if row.id in resolving:
            continue  # this run resolves it: the resolution is the news
        last = row.notified_at or row.opened_at
        if (run.at - last).total_seconds() < renotify_hours * 3600:
            continue
        conn.execute(update(IncidentRow).where(IncidentRow.id == row.id).values(notified_at=run.at))
        body = event_body(
            "incident.reminder",
            route,
            eval_set_name,
            run,
            _current(candidates, row.metric),
            row.id,
        )
        body.update(
            metric=row.metric,
            detector=row.detector,
            open_hours=round((run.at - row.opened_at).total_seconds() / 3600, 1),
        )
        out.append(body)
    return out


DRIFTED = "drifted"
"""A suspect run's judge gave a verdict on at least one canary (one moved, or another is
missing)."""
NO_VERDICT = "no_verdict"
"""A suspect run's judge gave no verdict on any canary (failed calls, budget, unreadable)."""


def canary_kind(engine: Engine, run_id: int) -> str | None:
    """Why a run's canaries made it suspect: ``DRIFTED`` or ``NO_VERDICT``; None without any.

    ``judge.drift`` is raised again when a run in a suspect streak changes kind: a judge
    that drifted one day and fails the next is new news.
    """
    with engine.connect() as conn:
        got = list(
            conn.execute(
                select(CanaryResultRow.observed).where(CanaryResultRow.run_id == run_id)
            ).scalars()
        )
    if not got:
        return None
    return DRIFTED if any(v is not None for v in got) else NO_VERDICT


def judge_drift_body(
    conn: Connection, route: str, eval_set_name: str, run: RunRecord
) -> dict[str, Any]:
    """The ``judge.drift`` event of a judge-suspect run: its canaries moved or got no verdict.

    Each canary gives the grade expected and the one the judge gave (``got``); where it
    gave none (``got`` null), ``error`` says why, so that a judge that drifted reads apart
    from one that failed.
    """
    canaries = [
        {"criterion": r.criterion, "expected": r.expected, "got": r.observed, "error": r.error}
        for r in conn.execute(
            select(CanaryResultRow.__table__)
            .where(CanaryResultRow.run_id == run.run_id)
            .order_by(CanaryResultRow.canary_index, CanaryResultRow.criterion)
        )
    ]
    judge = conn.execute(
        select(EvalSetRow.judge)
        .join(RunRow, RunRow.eval_set_id == EvalSetRow.id)
        .where(RunRow.id == run.run_id)
    ).scalar_one_or_none()
    return {
        "event": "judge.drift",
        "id": str(uuid.uuid4()),
        "at": run.at.isoformat(),
        "route": route,
        "eval_set": eval_set_name,
        "run_id": run.run_id,
        "judge": judge,
        "kind": DRIFTED if any(c["got"] is not None for c in canaries) else NO_VERDICT,
        "canaries": canaries,
    }
