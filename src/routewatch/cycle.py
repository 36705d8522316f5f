"""After a cycle's runs: detect, then record findings, incidents and their alert events.

This is the shell around the pure ``detect`` and ``incidents`` modules. For each
completed run it loads the route's history, evaluates the run, applies the fleet-wide
false-alarm budget across the cycle's runs, advances the incidents and writes it all
(with outbox events) in one transaction per run. Detection of a run happens once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from routewatch.config import Config
from routewatch.cron import parse_cron
from routewatch.detect.baseline import history_depth
from routewatch.detect.budget import cycle_alpha
from routewatch.detect.findings import Candidate, Evaluation, decide, evaluate, route_alpha
from routewatch.evalset import EvalSet
from routewatch.incidents import advance, backfilled, unmeasured
from routewatch.judge.pairwise import PairwiseTarget, compare_runs
from routewatch.runner import RunReport
from routewatch.store.detection import (
    HISTORY_SLACK,
    IncidentChanged,
    canary_kind,
    detected_after,
    load_history,
    load_run,
    open_incidents,
    record_detection,
    stored_detection,
    undetected_runs,
)
from routewatch.store.pairwise import PreferenceRecord
from routewatch.store.runs import ClaimOutcome

WRITE_ATTEMPTS = 3
"""Tries at writing one run's detection when a concurrent writer got there first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedRun:
    """A run to detect on."""

    route: str
    eval_set: str
    run_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunVerdict:
    """What detection concluded about one run, for the ``run`` summary."""

    route: str
    eval_set: str
    run_id: int
    known: bool
    findings: tuple[Candidate, ...] = ()
    """Candidates that paged on this run (new or continuing incidents)."""
    opened: tuple[int, ...] = ()
    """Incidents this run opened."""
    opened_metrics: tuple[str, ...] = ()
    """The metric of each incident in ``opened``, in the same order."""
    resolved: tuple[int, ...] = ()
    open_metrics: frozenset[str] = frozenset()
    """Metrics with an incident open after this run."""
    lower_limit: float | None = None
    """The sigma rule's lower limit for this run's score."""
    skipped: bool = False
    """Detection had already been recorded for this run."""
    policy_notes: tuple[str, ...] = ()
    """Fallback-policy changes made or suggested on this run, in words."""
    backfill: bool = False
    """A later run had been detected first: incidents and policies were left alone."""
    paged_metrics: frozenset[str] = frozenset()
    """Metrics a finding paged on for this run (for a backfill: would have paged on)."""

    @property
    def state(self) -> str:
        """``unknown``, ``degraded`` (an open incident) or ``healthy``.

        A backfill is judged by its own findings: the incidents open now were opened by
        later runs.
        """
        if self.paged_metrics if self.backfill else self.open_metrics:
            return "degraded"
        return "healthy" if self.known else "unknown"

    @property
    def regression(self) -> bool:
        """Whether ``run --fail-on-regression`` fails for this run: degraded, not a backfill.

        A backfill moves no incident, alert or policy; a gate on it would fail on the past.
        """
        return self.state == "degraded" and not self.backfill


def completed_runs(reports: Sequence[RunReport]) -> list[CompletedRun]:
    """The runs of a cycle's reports that detection should look at.

    Runs found already completed are included: if an earlier process stopped between
    finishing a run and detecting it, this detects it now (and skips it otherwise).
    """
    return [
        CompletedRun(route=r.route, eval_set=r.eval_set, run_id=r.run_id)
        for r in reports
        if r.summary is not None or r.outcome is ClaimOutcome.completed
    ]


def cycle_days(config: Config, route: str) -> float:
    """Days between a route's scheduled runs (one when it runs on demand only)."""
    schedule = config.routes[route].schedule
    if schedule is None:
        return 1.0
    trigger = parse_cron(schedule, config.timezone)
    start = datetime(2026, 1, 5, tzinfo=trigger.timezone)
    fires: list[datetime] = []
    now = start
    for _ in range(50):
        nxt = trigger.get_next_fire_time(fires[-1] if fires else None, now)
        if nxt is None:
            break
        fires.append(nxt)
        now = nxt + timedelta(seconds=1)
    if len(fires) < 2:
        return 1.0
    return float((fires[-1] - fires[0]).total_seconds() / (len(fires) - 1) / 86400.0)


def detect_cycle(
    engine: Engine,
    config: Config,
    runs: Sequence[CompletedRun],
    *,
    now: datetime,
) -> list[RunVerdict]:
    """Detect on ``runs`` (one cycle), record the outcome and return a verdict per run.

    Pairwise mode (``compare_cycle``) is left to the caller, after alerts are delivered:
    its judge calls must not hold up a page.
    """
    settings = config.detection
    tests = sum(len(r.evals) for r in config.routes.values())
    pending: list[tuple[CompletedRun, Evaluation, float]] = []
    drift: set[int] = set()
    verdicts: dict[int, RunVerdict] = {}
    records = {}
    for run in runs:
        stored = stored_detection(engine, run.run_id)
        if stored is not None:  # detected already: a slot repeated, say
            # One older than the newest detected is judged by what paged on it then; the
            # newest by the incidents open now.
            late = detected_after(engine, route=run.route, eval_set_name=run.eval_set, at=stored.at)
            still_open = open_incidents(engine, route=run.route, eval_set_name=run.eval_set)
            verdicts[run.run_id] = RunVerdict(
                route=run.route,
                eval_set=run.eval_set,
                run_id=run.run_id,
                known=stored.known,
                skipped=True,
                open_metrics=frozenset(i.metric for i in still_open),
                backfill=late,
                paged_metrics=stored.paged,
            )
            continue
        record = load_run(engine, run.run_id)
        if record is None:
            continue
        records[run.run_id] = record
        history = load_history(
            engine,
            route=run.route,
            eval_set_name=run.eval_set,
            before=record.at,
            limit=history_depth(settings) + HISTORY_SLACK,
        )
        if record.judge_suspect and (
            not (history and history[0].judge_suspect)
            # Still suspect, for another reason: drifted verdicts then none, or back.
            or canary_kind(engine, history[0].run_id) != canary_kind(engine, run.run_id)
        ):
            drift.add(run.run_id)
        alpha = cycle_alpha(settings.false_alarms_per_year, cycle_days(config, run.route))
        evaluation = evaluate(
            record, history, settings, alpha_route=route_alpha(settings, alpha, tests)
        )
        pending.append((run, evaluation, alpha))
    for alpha in sorted({a for _, _, a in pending}):
        group = [(run, ev) for run, ev, a in pending if a == alpha]
        decisions = decide([ev for _, ev in group], settings, alpha_cycle=alpha, tests=tests)
        for (run, ev), decision in zip(group, decisions, strict=True):
            record = records[run.run_id]
            late = detected_after(engine, route=run.route, eval_set_name=run.eval_set, at=record.at)
            for attempt in range(WRITE_ATTEMPTS):
                still_open = open_incidents(engine, route=run.route, eval_set_name=run.eval_set)
                if late:
                    # A backfill: recorded for the history and the report, but incidents,
                    # alerts and policies follow time and are not moved by the past.
                    bad = {f.metric for f in decision.findings} | set(decision.bad_metrics)
                    transition = backfilled(still_open, bad)
                else:
                    transition = advance(
                        still_open,
                        decision.findings,
                        decision.bad_metrics,
                        recover_runs=settings.recover_runs,
                        known=ev.known,
                        hold_quality=record.judge_suspect,
                        held=unmeasured(record, [i.metric for i in still_open]),
                    )
                try:
                    recorded = record_detection(
                        engine,
                        run=record,
                        route=run.route,
                        eval_set_name=run.eval_set,
                        decision=decision,
                        transition=transition,
                        targets=config.alerts.targets(),
                        now=now,
                        policies=None if late else config.policies,
                        renotify_hours=config.alerts.renotify_hours,
                        judge_drift=run.run_id in drift and not late,
                    )
                    break
                except (IntegrityError, IncidentChanged):
                    # Another process wrote the same policy version or incident first,
                    # or an incident was resolved by hand: read the state again and
                    # decide once more.
                    if attempt == WRITE_ATTEMPTS - 1:
                        raise
            verdicts[run.run_id] = RunVerdict(
                route=run.route,
                eval_set=run.eval_set,
                run_id=run.run_id,
                known=ev.known,
                findings=decision.findings,
                opened=recorded.opened,
                opened_metrics=tuple(c.metric for c in transition.opened)
                if recorded.opened
                else (),
                resolved=recorded.resolved,
                open_metrics=transition.open_after,
                lower_limit=ev.sigma.lower_limit if ev.sigma else None,
                skipped=not recorded.written,
                policy_notes=recorded.policy_notes,
                backfill=late,
                paged_metrics=frozenset(f.metric for f in decision.findings),
            )
    return [verdicts[r.run_id] for r in runs if r.run_id in verdicts]


def compare_cycle(
    engine: Engine,
    config: Config,
    runs: Sequence[CompletedRun | RunVerdict],
    *,
    now: datetime,
    eval_sets: Mapping[str, EvalSet],
    env: Mapping[str, str],
) -> list[PreferenceRecord]:
    """Pairwise mode on detected runs whose eval set asks for it (``pairwise: true``).

    Call it after detection and alert delivery. Runs compared before may be passed
    again: an interrupted comparison is finished, and items already compared are not
    asked about again. ``env`` is where the judge's API key is read. Returns the
    comparisons stored now.
    """
    targets = [
        PairwiseTarget(run_id=r.run_id, evalset=eval_sets[r.eval_set])
        for r in runs
        if r.eval_set in eval_sets
    ]
    return compare_runs(engine, config, targets, env=env, now=now)


def detect_left_over(
    engine: Engine,
    config: Config,
    routes: Sequence[str],
    *,
    now: datetime,
) -> list[RunVerdict]:
    """Detect completed runs that never were (a crash, a failed cycle), slot by slot.

    Runs of one logical time are detected together, as one cycle, oldest first.
    """
    verdicts: list[RunVerdict] = []
    pending = undetected_runs(engine, routes or list(config.routes))
    for at in sorted({u.at for u in pending}):
        group = [
            CompletedRun(route=u.route, eval_set=u.eval_set, run_id=u.run_id)
            for u in pending
            if u.at == at
        ]
        verdicts += detect_cycle(engine, config, group, now=now)
    return verdicts
