"""``routewatch demo``: a month of runs against the built-in simulator, no keys needed."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click

from routewatch.cli.runs import summary_table
from routewatch.cli.status import status_table
from routewatch.clock import SystemClock
from routewatch.demo import DEFAULT_DAYS, DEGRADED_ROUTE, DemoResult, run_demo
from routewatch.store.runs import ClaimOutcome


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("routewatch-demo"),
    show_default=True,
    help="Folder for the demo's project and SQLite database (reused when it exists).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=DEFAULT_DAYS,
    show_default=True,
    help="Daily runs to backfill (at 06:00 UTC), ending today, or yesterday before 06:00 UTC.",
)
def demo_command(directory: Path, days: int) -> None:
    """Keyless demo: three routes, two eval sets, a breakage, its alert and the report.

    Serves the simulator and a local webhook receiver, backfills daily runs, breaks
    the cheap route for the last days, and shows the incident, the alerts received,
    the fallback policy's change and the report of the last week.
    """

    def on_day(at: datetime, degraded: bool, replayed: bool) -> None:
        note = f"  ({DEGRADED_ROUTE}'s model degraded)" if degraded else ""
        done = "replayed" if replayed else "already done"
        click.echo(f"{done} {at:%Y-%m-%d %H:%M} UTC{note}", err=True)

    result = run_demo(
        directory, env=dict(os.environ), clock=SystemClock(), days=days, on_day=on_day
    )
    last = [r for r in result.reports if r.at == result.reports[-1].at] if result.reports else []
    if any(r.summary is not None for r in last):
        click.echo(summary_table(last, {v.run_id: v for v in result.verdicts}) + "\n")
    for line in story_lines(result):
        click.echo(line)
    if result.status is not None:
        click.echo("\n" + status_table(result.status))
    click.echo(f"\nthe project is in {directory}/: try `routewatch status -c {result.config_path}`")


def story_lines(result: DemoResult) -> Iterator[str]:
    """What happened, in a few lines: the breakage, incidents, alerts, policy, report."""
    d = result.degradation
    if d is not None:
        yield (
            f"breakage:  {d.route} ({d.model}) answers right {d.quality:.0%} of the time "
            f"from {d.since:%Y-%m-%d} on"
        )
    opened = result.opened
    for o in opened:
        first = o.findings[0]
        base = f" (baseline {first.baseline_mean:.3f})" if first.baseline_mean is not None else ""
        detectors = ", ".join(
            f.detector.value + (f" p = {f.p_value:.2g}" if f.p_value is not None else "")
            for f in o.findings
        )
        yield (
            f"incident:  {o.route} x {o.eval_set} on {o.at:%Y-%m-%d}: "
            f"{o.metric} {first.observed:.3f}{base} by {detectors}"
        )
    if not opened:
        yield f"incident:  none opened this time{_done(result)}"
    deliveries = result.deliveries
    kinds = Counter(x.event for x in deliveries)
    verified = sum(x.verified for x in deliveries)
    listed = ", ".join(f"{kind} x{n}" for kind, n in kinds.items())
    yield (
        f"alerts:    {len(deliveries)} delivered to the local webhook {result.webhook_url}"
        + (f" ({listed}); {verified} of {len(deliveries)} signatures verified" if listed else "")
    )
    changes = [x.body for x in deliveries if x.event == "policy.changed"]
    for c in changes:
        before = " > ".join(c.get("previous_chain") or []) or "-"
        after = " > ".join(c.get("chain") or []) or "-"
        yield f"policy:    {c.get('policy')} v{c.get('version')}: {before}  =>  {after}"
    if not changes:
        yield "policy:    no change this time"
    for path in result.policy_files:
        yield f"           {'published to' if changes else 'its file:'} {path}"
    if result.report_path is not None:
        yield f"report:    {result.report_path}"


def _done(result: DemoResult) -> str:
    done = {r.at for r in result.reports if r.outcome is ClaimOutcome.completed}
    if not done:
        return ""
    days = len({r.at for r in result.reports})
    return f" ({len(done)} of {days} days were already done in {result.config_path.parent})"
