"""``routewatch demo``: two weeks of runs against the built-in simulator, no keys needed."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import click

from routewatch.cli.runs import finding_lines, summary_table
from routewatch.cli.status import status_table
from routewatch.clock import SystemClock
from routewatch.config import load_config
from routewatch.demo import DEFAULT_DAYS, run_demo
from routewatch.status import build_status
from routewatch.store.migrate import open_database


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
    help="Daily runs to backfill, ending today.",
)
def demo_command(directory: Path, days: int) -> None:
    """Keyless demo: serve the simulator and backfill daily runs of three routes.

    Each day is detected on and the fallback policy applied (its file written under
    policy/); the report joins the demo when it is built.
    """
    env = dict(os.environ)

    def on_day(at: datetime) -> None:
        click.echo(f"replaying {at:%Y-%m-%d %H:%M} UTC", err=True)

    result = run_demo(directory, env=env, clock=SystemClock(), days=days, on_day=on_day)
    click.echo(summary_table(result.reports, {v.run_id: v for v in result.verdicts}))
    for line in finding_lines(result.verdicts):
        click.echo(line)
    config = load_config(result.config_path, {})
    engine = open_database(config.database_url)
    try:
        click.echo("\n" + status_table(build_status(engine, config)))
    finally:
        engine.dispose()
    click.echo(f"\nthe project is in {directory}/: try `routewatch status -c {result.config_path}`")
