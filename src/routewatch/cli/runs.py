"""``routewatch run``: one cycle now, and the summary table."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import click

from routewatch.alerts.dispatch import Dispatcher, DispatchReport
from routewatch.cli.exit_codes import ExitCode
from routewatch.cli.options import config_option, routes_option
from routewatch.cli.table import format_table, num, pct, usd
from routewatch.clock import SystemClock, parse_instant
from routewatch.config import unset_secrets
from routewatch.cycle import (
    RunVerdict,
    compare_cycle,
    completed_runs,
    detect_cycle,
    detect_left_over,
)
from routewatch.detect.findings import Candidate
from routewatch.errors import RoutewatchError, UsageError
from routewatch.project import Project, load_project
from routewatch.runner import RunPlan, RunReport, execute, plan_runs, replay_gc
from routewatch.status import ERRORING_RATE, RouteState
from routewatch.store.migrate import SCHEMA_HEAD, open_database, open_read_only
from routewatch.store.pairwise import PreferenceRecord
from routewatch.store.policies import sync_publishers
from routewatch.store.preview import SlotPreview, preview_slot
from routewatch.store.queries import RunFacts, failed_runs, runs_by_id
from routewatch.store.runs import ClaimOutcome

AT_SKEW = timedelta(minutes=5)
"""How far ahead of this machine's clock ``--at`` may be (another machine's clock)."""


@click.command("run")
@config_option
@routes_option
@click.option(
    "--at",
    metavar="ISO8601",
    help="Logical time of the run (backfills, simulations), not in the future; without "
    "an offset it is in the config's timezone. Repeating it resumes or skips that slot. "
    "Default: now, or the route's interrupted run if there is one.",
)
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 3 when a run is degraded (a finding paged on it or an incident stays open) "
    "or erroring (half its calls or more failed).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what each route and eval set would do (new run, resume, skip), how many "
    "calls and what they would cost, from the store alone: nothing is called, written "
    "or sent.",
)
def run_command(
    config_path: Path,
    routes: tuple[str, ...],
    at: str | None,
    fail_on_regression: bool,
    dry_run: bool,
) -> int:
    """One cycle now: replay each route's eval sets, score, store, detect, print a summary."""
    env = dict(os.environ)
    project = load_project(config_path, env)
    try:
        at_time = parse_instant(at, project.config.timezone) if at is not None else None
    except ValueError:
        raise UsageError(
            f"--at {at!r} is not an ISO 8601 time, e.g. 2026-11-23T06:00:00Z"
        ) from None
    clock = SystemClock()
    if at_time is not None and at_time > clock.now() + AT_SKEW:
        # Detection leaves alone any run older than the newest one it has seen (a
        # backfill): a run in the future would silence every real run until then.
        raise UsageError(
            f"--at {at!r} is in the future (now {clock.now():%Y-%m-%dT%H:%MZ}); a run "
            "there would make every real run before it look like a backfill, which "
            "detection leaves alone"
        )
    plans = plan_runs(project.config, routes=list(routes), at=at_time, now=clock.now())
    if dry_run:
        # With --fail-on-regression too (a CI job previewing with its own flags): a dry
        # run replays nothing, so nothing can regress.
        click.echo(dry_run_table(project, plans, now=clock.now()))
        for line in unset_secrets(project.config, env, daemon=False):
            click.echo(f"warning: {line}", err=True)
        return ExitCode.ok
    engine = open_database(project.config.database_url)
    selected = list(routes) or list(project.config.routes)
    started = clock.now()
    try:
        # Publishers new to the config get the current chain; gone ones are given up.
        sync_publishers(engine, project.config.policies, clock.now())
        # Runs an earlier process completed but never detected come first, in time order.
        verdicts = detect_left_over(engine, project.config, selected, now=clock.now())
        try:
            with _progress(_calls(project, plans)) as tick, replay_gc():
                reports = asyncio.run(
                    execute(project, engine, plans, env=env, clock=clock, on_result=tick)
                )
        except RoutewatchError:
            # The other runs of this cycle completed: detect them and deliver, then fail.
            detect_left_over(engine, project.config, selected, now=clock.now())
            Dispatcher(engine, project.config, env).drain(project.config.alerts.delivery.run_wait_s)
            # How to retry: the slot carries seconds, which the summary's times leave out.
            for failed in failed_runs(engine, selected, since=started):
                slot = failed.slot_key.replace("+00:00", "Z")
                click.echo(
                    f"{failed.route} x {failed.eval_set}: run {failed.id} failed; once the "
                    f"cause is fixed, `routewatch run --route {failed.route} --at {slot}` "
                    "retries it",
                    err=True,
                )
            raise
        verdicts += detect_cycle(engine, project.config, completed_runs(reports), now=clock.now())
        delivery = Dispatcher(engine, project.config, env).drain(
            project.config.alerts.delivery.run_wait_s
        )
        # After the alerts: a page must not wait for the judge's comparisons.
        compared = compare_cycle(
            engine, project.config, verdicts, now=clock.now(), eval_sets=project.eval_sets, env=env
        )
        stored = runs_by_id(
            engine,
            [
                r.run_id
                for r in reports
                if r.summary is None and r.outcome is ClaimOutcome.completed
            ],
        )
    finally:
        engine.dispose()
    for line in _notes(reports):
        click.echo(line, err=True)
    for line in finding_lines(verdicts):
        click.echo(line, err=True)
    for line in delivery_lines(delivery):
        click.echo(line, err=True)
    for line in pairwise_lines(compared, verdicts):
        click.echo(line, err=True)
    click.echo(summary_table(reports, {v.run_id: v for v in verdicts}, stored))
    if any(r.every_call_failed for r in reports):
        # Nothing was measured on that run: a runtime failure, as a missing key is.
        return ExitCode.failure
    if fail_on_regression and (
        any(v.regression for v in verdicts) or any(_erroring(r) for r in reports)
    ):
        return ExitCode.regression
    return ExitCode.ok


def _not_replayed_row(r: RunReport, facts: RunFacts | None, state: str, *, ttft: bool) -> list[str]:
    """A summary row for a slot this process did not replay: its stored totals, if any."""
    head = [r.route, r.eval_set, str(r.run_id), f"{r.at:%Y-%m-%d %H:%M}"]
    if facts is None or r.outcome is not ClaimOutcome.completed:
        return [*head, "-", *["-"] * (11 if ttft else 10), r.outcome.value]
    return [
        *head,
        "-",
        *_figures(facts, ttft=ttft),
        "-",
        "-",
        "already completed" if state == "-" else state,
    ]


class _Figures(Protocol):
    """A run's totals, as a summary or as stored."""

    @property
    def score(self) -> float | None: ...
    @property
    def pass_rate(self) -> float | None: ...
    @property
    def error_rate(self) -> float | None: ...
    @property
    def p50_latency_ms(self) -> float | None: ...
    @property
    def p95_latency_ms(self) -> float | None: ...
    @property
    def p50_ttft_ms(self) -> float | None: ...
    @property
    def tokens_in(self) -> int | None: ...
    @property
    def tokens_out(self) -> int | None: ...
    @property
    def cost_usd(self) -> float | None: ...


def _figures(run: _Figures, *, ttft: bool) -> list[str]:
    """The summary's cells from score to cost; with ``ttft``, time to first token too."""
    return [
        num(run.score, digits=3),
        pct(run.pass_rate),
        pct(run.error_rate),
        num(run.p50_latency_ms, " ms"),
        num(run.p95_latency_ms, " ms"),
        *([num(run.p50_ttft_ms, " ms")] if ttft else []),
        num(run.tokens_in),
        num(run.tokens_out),
        usd(run.cost_usd),
    ]


def _erroring(report: RunReport) -> bool:
    """Whether a run this process replayed failed often enough to make its route erroring."""
    s = report.summary
    return s is not None and (s.error_rate or 0.0) >= ERRORING_RATE


def _calls(project: Project, plans: list[RunPlan]) -> int:
    return sum(
        len(project.eval_sets[p.eval_set].items) * project.config.routes[p.route].samples
        for p in plans
    )


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    if not sys.stderr.isatty():
        yield lambda: None
        return
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def _notes(reports: list[RunReport]) -> Iterator[str]:
    for r in reports:
        where = f"{r.route} x {r.eval_set} (slot {r.slot_key})"
        if r.outcome is ClaimOutcome.completed:
            yield f"{where}: already completed as run {r.run_id}; nothing replayed"
        elif r.outcome is ClaimOutcome.busy:
            yield f"{where}: being run by {r.holder or 'another process'}; skipped"
        elif r.outcome in (ClaimOutcome.version_changed, ClaimOutcome.config_changed):
            changed = "eval set" if r.outcome is ClaimOutcome.version_changed else "route config"
            yield (
                f"{where}: run {r.run_id} of this slot was started with another {changed}, "
                "so it is left as it is; use another --at to run this version"
            )
        s = r.summary
        if s is not None and s.results_total and s.errors_total:
            # This process's failures by class (a resumed run's earlier ones are not known).
            kinds = ", ".join(f"{count} {kind}" for kind, count in r.call_errors)
            failed = f" ({kinds})" if kinds else ""
            example = f": {r.call_error_example}" if r.call_error_example else ""
            if r.every_call_failed:
                yield f"{where}: every call failed{failed}{example}"
            elif (s.error_rate or 0.0) >= ERRORING_RATE:
                yield (
                    f"{where}: {s.errors_total} of {s.results_total} calls failed{failed}{example}"
                )
        if r.judge_suspect and r.canary_error is not None:
            yield (
                f"{where}: judge suspect: the judge gave no verdict on any canary, so this "
                f"run's judged scores are not to be trusted: {r.canary_error}"
            )
        elif r.judge_suspect:
            yield (
                f"{where}: judge suspect: its canary verdicts moved, so this run's judged "
                "scores are not to be trusted (see canary_results)"
            )
        if r.partially_judged:
            yield (
                f"{where}: partially judged: the judge's daily budget ran out; the outputs "
                "it did not judge are scored by their checks alone"
            )
        if r.outcome is ClaimOutcome.resumed:
            yield (
                f"{where}: resumed run {r.run_id}: {r.already_stored} result(s) were stored, "
                f"{r.replayed} replayed"
            )


def finding_lines(verdicts: list[RunVerdict]) -> Iterator[str]:
    """One line per metric that findings paged on, and one per run that resolved incidents.

    A metric's line names every detector that paged on it, and the incident it opened.
    """
    for v in verdicts:
        where = f"{v.route} x {v.eval_set} (run {v.run_id})"
        opened = dict(zip(v.opened_metrics, v.opened, strict=False))
        by_metric: dict[str, list[Candidate]] = {}
        for f in v.findings:
            by_metric.setdefault(f.metric, []).append(f)
        for metric, found in by_metric.items():
            first = found[0]
            if v.backfill:
                new = " (a backfill: incidents follow time and were left alone)"
            elif metric in opened:
                new = f": opened incident #{opened[metric]}"
            else:
                new = ""
            base = (
                f" (baseline {first.baseline_mean:.3f})" if first.baseline_mean is not None else ""
            )
            detectors = ", ".join(
                f.detector.value + (f" p = {f.p_value:.2g}" if f.p_value is not None else "")
                for f in found
            )
            yield f"{where}: {metric} {first.observed:.3f}{base} by {detectors}{new}"
        if v.resolved:
            yield f"{where}: resolved incident(s) {', '.join(map(str, v.resolved))}"
        for note in v.policy_notes:
            yield f"{where}: {note}"


def pairwise_lines(
    compared: Sequence[PreferenceRecord], verdicts: Sequence[RunVerdict]
) -> Iterator[str]:
    """One line per run that pairwise mode compared: what the judge preferred, and its cost.

    Its calls come after the run's summary was counted, so the table's judge columns
    leave them out.
    """
    where = {v.run_id: f"{v.route} x {v.eval_set} (run {v.run_id})" for v in verdicts}
    for run_id in dict.fromkeys(r.run_id for r in compared):
        found = [r for r in compared if r.run_id == run_id]
        counts = Counter(r.preference.value if r.preference else None for r in found)
        said = ", ".join(
            f"{label} {counts[key]}"
            for key, label in (
                ("baseline", "baseline preferred"),
                ("today", "today preferred"),
                ("tie", "tie"),
                (None, "not compared"),
            )
            if counts[key]
        )
        cost = sum(r.cost_usd for r in found)
        calls = sum(r.calls for r in found)
        yield (
            f"{where.get(run_id, f'run {run_id}')}: pairwise on {len(found)} fallen item(s): "
            f"{said}; {calls} judge call(s), {usd(cost)}"
        )


def delivery_lines(report: DispatchReport) -> Iterator[str]:
    """What the outbox delivery before exit did, when there was anything to deliver."""
    backlog = report.backlog
    if backlog is None or not (report.delivered or report.failed or report.dead or backlog.pending):
        return
    line = f"alerts and publishers: {report.delivered} delivered"
    if backlog.pending:
        when = (
            f"{backlog.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if backlog.next_attempt_at else "-"
        )
        line += (
            f", {backlog.pending} pending (next attempt {when}; the next run or the daemon retries)"
        )
    if report.dead:
        line += f", {report.dead} given up"
    yield line
    for error in dict.fromkeys(report.errors):
        yield f"  failed: {error}"


def summary_table(
    reports: list[RunReport],
    verdicts: Mapping[int, RunVerdict] | None = None,
    stored: Mapping[int, RunFacts] | None = None,
) -> str:
    """The per-run summary table ``run`` prints, with each run's detection state.

    A slot found already completed shows its ``stored`` totals, when given. A column of
    time to first token (p50) appears when a run in the table streamed.
    """
    verdicts = verdicts or {}
    stored = stored or {}
    figures = [r.summary or stored.get(r.run_id) for r in reports]
    ttft = any(f is not None and f.p50_ttft_ms is not None for f in figures)
    rows = []
    for r in reports:
        s = r.summary
        verdict = verdicts.get(r.run_id)
        state = verdict.state if verdict is not None and not verdict.skipped else "-"
        if verdict is not None and verdict.backfill and not verdict.skipped:
            state += " (backfill)"
        if s is None:
            rows.append(_not_replayed_row(r, stored.get(r.run_id), state, ttft=ttft))
            continue
        if (s.error_rate or 0.0) >= ERRORING_RATE:
            state = RouteState.erroring.value  # as `status` names the route after it
        rows.append(
            [
                r.route,
                r.eval_set,
                str(r.run_id),
                f"{r.at:%Y-%m-%d %H:%M}",
                f"{s.items_scored}/{s.items_total}",
                *_figures(s, ttft=ttft),
                f"{r.judge_calls}/{r.judge_calls_saved}",
                usd(r.judge_cost_usd),
                state,
            ]
        )
    headers = [
        "route",
        "eval set",
        "run",
        "at (UTC)",
        "items",
        "score",
        "pass",
        "errors",
        "p50",
        "p95",
        *(["ttft p50"] if ttft else []),
        "tokens in",
        "tokens out",
        "cost",
        "judge calls/saved",
        "judge cost",
        "state",
    ]
    return format_table(headers, rows)


_WOULD = {
    ClaimOutcome.started: "new run",
    ClaimOutcome.resumed: "resume run {run_id} ({stored} of {total} calls stored)",
    ClaimOutcome.completed: "nothing: completed as run {run_id}",
    ClaimOutcome.busy: "nothing: run {run_id} is being run by {holder}",
    ClaimOutcome.version_changed: "nothing: run {run_id} of this slot has another eval-set version",
    ClaimOutcome.config_changed: "nothing: run {run_id} of this slot has another route config",
}


def _cancelling(runs: Sequence[int]) -> str:
    if not runs:
        return ""
    listed = ", ".join(str(r) for r in runs)
    return f"; cancels interrupted run(s) {listed} of another eval-set version or route config"


def dry_run_table(project: Project, plans: Sequence[RunPlan], *, now: datetime) -> str:
    """What ``run`` would do with each plan, read from the store without writing to it.

    The cost is estimated from the newest completed run of the route and eval set (the
    route's calls and the judge's, per call); ``-`` before the first one.

    Raises:
        DatabaseError: the database cannot be reached, or a newer routewatch wrote it.
    """
    url = project.config.database_url
    engine, revision = open_read_only(url)
    rows = []
    costs: list[float] = []
    try:
        for plan in plans:
            route = project.config.routes[plan.route]
            evalset = project.eval_sets[plan.eval_set]
            total = len(evalset.items) * route.samples
            preview = (
                preview_slot(
                    engine,
                    route_name=plan.route,
                    route=route,
                    evalset=evalset,
                    slot_key=plan.slot_key,
                    resume_unfinished=plan.resume_unfinished,
                    now=now,
                )
                if engine is not None
                else SlotPreview(outcome=ClaimOutcome.started, slot_key=plan.slot_key)
            )
            replays = preview.outcome in (ClaimOutcome.started, ClaimOutcome.resumed)
            calls = total - preview.stored if replays else 0
            cost = preview.cost_per_call
            if cost is not None and calls:
                costs.append(cost * calls)
            rows.append(
                [
                    plan.route,
                    plan.eval_set,
                    preview.slot_key.replace("T", " ").replace("+00:00", ""),
                    _WOULD[preview.outcome].format(
                        run_id=preview.run_id,
                        stored=preview.stored,
                        total=total,
                        holder=preview.holder or "another process",
                    )
                    + _cancelling(preview.cancels),
                    str(calls),
                    # As the runner: only an eval set with criteria is judged.
                    (evalset.judge or "default") if evalset.criteria else "-",
                    usd(cost * calls) if cost is not None and calls else "-",
                ]
            )
    finally:
        if engine is not None:
            engine.dispose()
    headers = ["route", "eval set", "slot (UTC)", "would", "calls", "judge", "cost (est.)"]
    lines = ["dry run: nothing is called, written or sent", format_table(headers, rows)]
    calls = sum(int(r[4]) for r in rows)
    judged = any(r[5] != "-" and r[4] != "0" for r in rows)
    total_line = f"{calls} call(s) in all" + (", and the judge's on them" if judged else "")
    if costs:
        total_line += f"; about {usd(sum(costs))} where an earlier run gives a price"
    lines.append(total_line)
    if revision is None:
        lines.append("no database yet: every slot would start a new run")
    elif revision != SCHEMA_HEAD:
        lines.append(
            f"the database is at schema {revision}, not {SCHEMA_HEAD}: the next run "
            "upgrades it first"
        )
    return "\n".join(lines)
