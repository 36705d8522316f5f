"""``routewatch incidents``: the open incidents of every route, or the newest of all."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click

from routewatch.cli.options import config_option, routes_option
from routewatch.cli.table import format_table, num
from routewatch.config import load_config
from routewatch.errors import UsageError
from routewatch.store.migrate import open_database
from routewatch.store.queries import IncidentFacts, list_incidents


@click.command("incidents")
@config_option
@routes_option
@click.option("--all", "show_all", is_flag=True, help="Resolved incidents too, newest first.")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="With --all, at most this many (every open incident is always listed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print them as a JSON list.")
def incidents_command(
    config_path: Path, routes: tuple[str, ...], show_all: bool, limit: int, as_json: bool
) -> None:
    """List open incidents (with --all, resolved ones too), newest first.

    `status` shows one incident per route; this shows each of them, with the
    detector that opened it, what it saw against the baseline, and how many healthy
    runs in a row it has had toward `recover_runs`.
    """
    config = load_config(config_path, dict(os.environ))
    engine = open_database(config.database_url)
    try:
        found = list_incidents(
            engine,
            list(dict.fromkeys(routes)) or None,
            open_only=not show_all,
            limit=limit if show_all else None,
        )
        # A route taken out of the config keeps its incidents: it is known by them.
        others = [r for r in routes if r not in config.routes]
        stored = {i.route for i in list_incidents(engine, others, open_only=False, limit=None)}
    finally:
        engine.dispose()
    unknown = [r for r in routes if r not in config.routes and r not in stored]
    if unknown:
        known = ", ".join(config.routes) or "none"
        raise UsageError(f"unknown route(s) {', '.join(unknown)} for --route; known: {known}")
    if as_json:
        click.echo(json.dumps([_json(i) for i in found], indent=2))
    elif not found:
        click.echo("no open incidents" if not show_all else "no incidents")
    else:
        click.echo(incidents_table(found, config.detection.recover_runs, set(config.routes)))


def _json(incident: IncidentFacts) -> dict[str, object]:
    body = dataclasses.asdict(incident)
    for key in ("opened_at", "resolved_at"):
        if body[key] is not None:
            body[key] = body[key].isoformat().replace("+00:00", "Z")
    return body


def incidents_table(found: list[IncidentFacts], recover_runs: int, configured: set[str]) -> str:
    """One line per incident: where, what, since when, and how far toward recovery.

    A route no longer ``configured`` says so: no run will ever resolve its incidents.
    """
    rows = [
        [
            f"#{i.id}",
            i.route if i.route in configured else f"{i.route} (not configured)",
            i.eval_set,
            i.metric,
            i.detector,
            f"{i.opened_at:%Y-%m-%d %H:%M}",
            num(i.observed, digits=3),
            num(i.baseline_mean, digits=3),
            "-" if i.p_value is None else f"{i.p_value:.2g}",
            f"resolved {i.resolved_at:%Y-%m-%d %H:%M}"
            if i.resolved_at is not None
            else f"open, {i.healthy_streak} of {recover_runs} healthy",
        ]
        for i in found
    ]
    headers = [
        "incident",
        "route",
        "eval set",
        "metric",
        "detector",
        "opened (UTC)",
        "observed",
        "baseline",
        "p",
        "status",
    ]
    return format_table(headers, rows)
