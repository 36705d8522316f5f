"""``routewatch report``: the weekly HTML report, for any week or range of days."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from routewatch.cli.options import config_option
from routewatch.config import load_config
from routewatch.errors import UsageError
from routewatch.report.data import days_window, last_full_week, week_window
from routewatch.report.render import write_report
from routewatch.store.migrate import open_for_reading

WEEK_DAYS = 7
"""Days in a report given only its last day."""
EARLIEST_YEAR = 1971
"""The earliest year a report may cover; before it, the period before would not exist."""


@click.command("report")
@config_option
@click.option("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47. Default: last week.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="First day (YYYY-MM-DD); alone, up to today.",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last day, included; alone, the 7 days ending on it.",
)
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
    now = datetime.now(UTC)
    try:
        if since or until:
            today = now.astimezone(ZoneInfo(config.timezone)).date()
            last: date = until.date() if until else today
            first: date = since.date() if since else last - timedelta(days=WEEK_DAYS - 1)
            if since and not until and first > today:
                raise UsageError(f"--since {first} is after today ({today})")
            window = days_window(first, last, config.timezone)
        else:
            window = week_window(week or last_full_week(now, config.timezone), config.timezone)
    except OverflowError:  # the year 1 or 9999: its edges, or the period before, overflow
        raise UsageError(
            f"the period is out of range: give a date from {EARLIEST_YEAR} on, before 9999"
        ) from None
    if window.start.year < EARLIEST_YEAR:
        # Its change columns compare with the period before, which may not exist.
        raise UsageError(
            f"the period {window.label} is out of range: give a date from {EARLIEST_YEAR} on"
        )
    if window.start > now:
        # Nothing can have run there: an empty report would only look like an outage.
        raise UsageError(f"the period {window.label} has not begun yet")
    engine = open_for_reading(config.database_url)
    try:
        path = write_report(engine, config, window, output=output)
    finally:
        engine.dispose()
    click.echo(f"report for {window.label}: {path}")
