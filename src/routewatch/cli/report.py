"""``routewatch report``: the weekly HTML report, for any week or range of days."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import click

from routewatch.cli.options import config_option
from routewatch.config import load_config
from routewatch.errors import UsageError
from routewatch.report.data import days_window, last_full_week, week_window
from routewatch.report.render import write_report
from routewatch.store.migrate import open_database


@click.command("report")
@config_option
@click.option("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47. Default: last week.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day, included.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Output file. Default: reports.dir/routewatch-<week>.html.",
)
def report_command(
    config_path: Path,
    week: str | None,
    since: datetime | None,
    until: datetime | None,
    output: Path | None,
) -> None:
    """Write the HTML report: quality, cost and latency per route, incidents, policy changes.

    One self-contained file (no script, nothing fetched), readable mailed or printed.
    """
    config = load_config(config_path, dict(os.environ))
    if week and (since or until):
        raise UsageError("give either --week or --since/--until, not both")
    if since or until:
        first: date = (since or until or datetime.now(UTC)).date()
        last: date = (until or datetime.now(UTC)).date()
        window = days_window(first, last, config.timezone)
    else:
        window = week_window(
            week or last_full_week(datetime.now(UTC), config.timezone), config.timezone
        )
    engine = open_database(config.database_url)
    try:
        path = write_report(engine, config, window, output=output)
    finally:
        engine.dispose()
    click.echo(f"report for {window.label}: {path}")
