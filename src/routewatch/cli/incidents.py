"""``routewatch incidents [resolve ID...]``: list every route's incidents; resolve some by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from click.core import ParameterSource

from routewatch.alerts.dispatch import Dispatcher
from routewatch.cli.options import config_option, routes_option
from routewatch.cli.runs import delivery_lines
from routewatch.cli.table import format_table, num
from routewatch.config import load_config
from routewatch.errors import UsageError
from routewatch.store.incidents import resolve_all_by_hand, unknown_incidents
from routewatch.store.migrate import open_for_changes, open_for_reading
from routewatch.store.queries import IncidentFacts, incident_json, list_incidents

LISTING_OPTIONS = {
    "--route": "routes",
    "--all": "show_all",
    "--limit": "limit",
    "--json": "as_json",
}
"""The options of the list, by parameter name: none of them applies to ``resolve``."""


@click.group("incidents", invoke_without_command=True)
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
@click.pass_context
def incidents_command(
    ctx: click.Context,
    config_path: Path,
    routes: tuple[str, ...],
    show_all: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List open incidents (with --all, resolved ones too), newest first.

    `status` shows one incident per route; this shows each of them, with the
    detector that opened it, what it saw against the baseline, and how many healthy
    runs in a row it has had toward `recover_runs`. `incidents resolve ID` closes one
    by hand.
    """
    if ctx.invoked_subcommand is not None:
        listing = [
            option
            for option, name in LISTING_OPTIONS.items()
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        ]
        if listing:
            raise UsageError(
                f"{', '.join(listing)} only applies to the list, not to "
                f"`incidents {ctx.invoked_subcommand}`"
            )
        # `incidents -c FILE resolve ID` means FILE too.
        ctx.obj = config_path
        return
    config = load_config(config_path, dict(os.environ))
    engine = open_for_reading(config.database_url)
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
        listed = [{**incident_json(i), "configured": i.route in config.routes} for i in found]
        click.echo(json.dumps(listed, indent=2))
    elif not found:
        click.echo("no open incidents" if not show_all else "no incidents")
    else:
        click.echo(incidents_table(found, config.detection.recover_runs, set(config.routes)))
        if any(i.resolved_at is None and i.route not in config.routes for i in found):
            click.echo(
                "no run resolves the incidents of a route not in the config: "
                "`routewatch incidents resolve ID` closes one by hand",
                err=True,
            )


@incidents_command.command("resolve")
@config_option
@click.argument("incident_ids", metavar="ID...", nargs=-1, required=True, type=int)
@click.option(
    "--reason",
    metavar="TEXT",
    help="Why, in words: kept with each incident and sent with its alert.",
)
@click.pass_context
def resolve_command(
    ctx: click.Context, config_path: Path, incident_ids: tuple[int, ...], reason: str | None
) -> None:
    """Resolve incident ID... by hand, without waiting for healthy runs.

    For an incident no run will resolve (its route was taken out of the config) or
    a drop fixed or accepted elsewhere. Sends `incident.resolved` to the alert targets
    and brings the route's policies up to date: a demoted route comes back once it
    has no other open incident. If the route is still below its baseline, its next
    run opens a new incident. An unknown ID changes nothing of the others.
    """
    if ctx.get_parameter_source("config_path") is ParameterSource.DEFAULT and ctx.obj:
        config_path = ctx.obj
    config = load_config(config_path, dict(os.environ))
    # Checked on a reading engine first: where there is no database, there is no
    # incident either, and none is created to say so.
    engine = open_for_reading(config.database_url)
    try:
        missing = unknown_incidents(engine, incident_ids)
    finally:
        engine.dispose()
    if missing:
        listed = ", ".join(f"#{n}" for n in missing)
        raise UsageError(
            f"no incident {listed}; nothing was resolved; `routewatch incidents --all` lists them"
        )
    engine = open_for_changes(config.database_url)
    try:
        resolved = resolve_all_by_hand(engine, config, incident_ids, actor="cli", reason=reason)
        events = sum(done.events for done in resolved)
        for done in resolved:
            i = done.incident
            where = f"{i.route} · {i.eval_set} · {i.metric}"
            if not done.changed:
                when = f" {i.resolved_at:%Y-%m-%d %H:%M} UTC" if i.resolved_at else ""
                click.echo(
                    f"incident #{i.id} ({where}) was already resolved{when} {_by(i)}; "
                    "nothing changed"
                )
                continue
            click.echo(f"incident #{i.id} ({where}) resolved by hand")
            for action in done.policy_actions:
                click.echo(f"policy {action['policy']}: {action['action']}")
        if events:
            delivery = Dispatcher(engine, config, dict(os.environ)).drain(
                config.alerts.delivery.run_wait_s
            )
            for line in delivery_lines(delivery):
                click.echo(line, err=True)
    finally:
        engine.dispose()


def _by(incident: IncidentFacts) -> str:
    """Who resolved an incident, in words."""
    if incident.resolved_by in (None, "routewatch"):
        return "after healthy runs"
    by = f"by hand ({incident.resolved_by})"
    return f"{by}: {incident.resolution_reason}" if incident.resolution_reason else by


def incidents_table(found: list[IncidentFacts], recover_runs: int, configured: set[str]) -> str:
    """One line per incident: where, what, since when, and how far toward recovery.

    A route no longer ``configured`` says so: no run will resolve its incidents, only
    ``incidents resolve``.
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
            + ("" if i.resolved_by in (None, "routewatch") else f" by hand ({i.resolved_by})")
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
