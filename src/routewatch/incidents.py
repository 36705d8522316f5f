"""PURE: incident state transitions for one (route, eval set), one run at a time.

A finding opens an incident for its metric unless one is open; later bad runs attach
to it without new alerts; ``recover_runs`` healthy runs in a row resolve it
(hysteresis, so a route that flaps around its threshold pages once, not daily). The
store persists the result, with the alert events, in the run's detection transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from routewatch.detect.baseline import RunRecord
from routewatch.detect.findings import CRITICAL_PREFIX, Candidate, Metric


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenIncident:
    """An incident that is open before the run."""

    id: int
    metric: str
    healthy_streak: int = 0
    """Healthy runs in a row since the last bad one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """What one run does to the incidents of its route and eval set."""

    opened: tuple[Candidate, ...] = ()
    """The first finding of each metric that had no open incident."""
    attached: tuple[int, ...] = ()
    """Open incidents this run was bad for (their healthy streak restarts)."""
    recovering: tuple[tuple[int, int], ...] = ()
    """``(incident id, new healthy streak)`` for open incidents this run was healthy for."""
    resolved: tuple[int, ...] = ()
    """Incidents this run resolved."""
    in_incident: frozenset[str] = frozenset()
    """Metrics with an incident open during this run: left out of later baselines."""
    open_after: frozenset[str] = frozenset()
    """Metrics with an incident still open after this run."""


def backfilled(open_incidents: Sequence[OpenIncident], bad_metrics: Iterable[str]) -> Transition:
    """The transition of a run detected after a later one (a backfill): none.

    Incidents follow time; a run from before the newest detected one neither opens,
    attaches to nor recovers any. It is still marked in incident for the metrics it was
    bad for, so later baselines leave it out.
    """
    return Transition(
        in_incident=frozenset(bad_metrics),
        open_after=frozenset(i.metric for i in open_incidents),
    )


def is_quality(metric: str) -> bool:
    """Whether ``metric`` measures answer quality (judged scores may feed it)."""
    return metric == "score" or metric.startswith("critical:")


def unmeasured(run: RunRecord, metrics: Iterable[str]) -> frozenset[str]:
    """Those of ``metrics`` that ``run`` measured nothing of.

    A run whose every call failed has no score, latency or cost: it must neither recover
    an incident on them (its errors would count as healthy runs, and people would be
    told the route recovered while it answered nothing) nor attach to one; nor one on a
    critical item. ``error_rate`` is always measured. A critical item that errored in a
    run that answered others counts as before (not failing): held, an item that always
    errors (too long for the model, say) would keep its incident, and a demotion, open
    for good.
    """
    scored = any(item.samples_scored > 0 for item in run.items.values())
    answered = run.results_total > run.errors_total
    held = set()
    for metric in metrics:
        if metric == Metric.score or metric.startswith(CRITICAL_PREFIX):
            quiet = not scored
        elif metric == Metric.latency:
            quiet = run.p95_latency_ms is None or not answered
        elif metric == Metric.cost:
            quiet = run.cost_per_call is None or not answered
        else:
            quiet = False
        if quiet:
            held.add(metric)
    return frozenset(held)


def advance(
    open_incidents: Sequence[OpenIncident],
    findings: Iterable[Candidate],
    bad_metrics: Iterable[str],
    *,
    recover_runs: int,
    known: bool = True,
    hold_quality: bool = False,
    held: Collection[str] = frozenset(),
) -> Transition:
    """The transition a run causes.

    Args:
        open_incidents: Open incidents before the run, at most one per metric.
        findings: Candidates that page (``Decision.findings``).
        bad_metrics: Metrics the run looked bad for (``Decision.bad_metrics``).
        recover_runs: Healthy runs in a row that resolve an incident.
        known: False while the baseline is unknown: open incidents are left as they are.
        hold_quality: The run cannot speak for quality (``judge_suspect``): its open
            quality incidents (``score``, ``critical:``) neither recover nor attach.
        held: Metrics the run measured nothing of (``unmeasured``): their open incidents
            neither recover nor attach.
    """
    by_metric = {i.metric: i for i in open_incidents}
    bad = set(bad_metrics)
    opened: dict[str, Candidate] = {}
    for f in findings:
        bad.add(f.metric)
        if f.metric not in by_metric and f.metric not in opened:
            opened[f.metric] = f
    attached, recovering, resolved = [], [], []
    for incident in open_incidents:
        if not known or (hold_quality and is_quality(incident.metric)):
            continue
        if incident.metric in held and incident.metric not in bad:
            continue
        if incident.metric in bad:
            attached.append(incident.id)
            continue
        streak = incident.healthy_streak + 1
        if streak >= recover_runs:
            resolved.append(incident.id)
        else:
            recovering.append((incident.id, streak))
    return Transition(
        opened=tuple(opened.values()),
        attached=tuple(attached),
        recovering=tuple(recovering),
        resolved=tuple(resolved),
        in_incident=frozenset(by_metric) | frozenset(opened),
        open_after=frozenset(i.metric for i in open_incidents if i.id not in set(resolved))
        | frozenset(opened),
    )
