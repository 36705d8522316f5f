"""``routewatch status``: each route's state and last run; each policy's active chain."""

from __future__ import annotations

import os
from pathlib import Path

import click

from routewatch.cli.options import config_option
from routewatch.cli.table import format_table, num, pct, usd
from routewatch.config import load_config
from routewatch.status import RouteState, RouteStatus, StatusBody, build_status
from routewatch.store.migrate import open_database


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status_command(config_path: Path, as_json: bool) -> None:
    """Per route: state, last run, baseline, open incident; per policy: active chain."""
    config = load_config(config_path, dict(os.environ))
    engine = open_database(config.database_url)
    try:
        body = build_status(engine, config)
    finally:
        engine.dispose()
    if as_json:
        click.echo(body.model_dump_json(indent=2))
    else:
        click.echo(status_table(body, config.detection.min_baseline_runs))


def status_table(body: StatusBody, min_baseline_runs: int | None = None) -> str:
    """The human form of the status document.

    With ``min_baseline_runs``, a route still learning its baseline says how far it is.
    """
    rows = []
    for r in body.routes:
        last = r.last_run
        rows.append(
            [
                r.route,
                _state_text(r, min_baseline_runs),
                last.at.strftime("%Y-%m-%d %H:%M") if last else "never",
                num(last.score, digits=3) if last else "-",
                pct(last.pass_rate) if last else "-",
                pct(last.error_rate) if last else "-",
                num(last.p95_latency_ms, " ms") if last else "-",
                usd(last.cost_usd) if last else "-",
                num(r.baseline.lower_limit, digits=3) if r.baseline else "-",
                _incident_text(r),
            ]
        )
    text = format_table(
        [
            "route",
            "state",
            "last run",
            "score",
            "pass",
            "errors",
            "p95",
            "cost",
            "lower limit",
            "open incident",
        ],
        rows,
    )
    for r in body.routes:
        if r.no_data_since is not None:
            text += (
                f"\n{r.route}: scheduled runs late since "
                f"{r.no_data_since:%Y-%m-%d %H:%M %Z} (route.no_data)"
            )
    if body.policies:
        text += "\n\n" + format_table(
            ["policy", "mode", "active chain", "version"],
            [[p.name, p.mode, " > ".join(p.active_chain), str(p.version)] for p in body.policies],
        )
    return text


def _state_text(route: RouteStatus, min_baseline_runs: int | None) -> str:
    state = route.state.value
    if route.no_data_since:
        return f"{state} (no data)"
    learning = route.baseline.runs if route.baseline else 0
    if (
        route.state is RouteState.unknown
        and route.last_run is not None
        and min_baseline_runs is not None
        and learning < min_baseline_runs
    ):
        # Several eval sets: the newest run's baseline; each set learns its own.
        return f"{state} (learning: baseline {learning} of {min_baseline_runs} runs)"
    return state


def _incident_text(route: RouteStatus) -> str:
    incident = route.open_incident
    if incident is None:
        return "-"
    more = f" (+{incident.others_open} more)" if incident.others_open else ""
    return f"#{incident.id} {incident.metric} since {incident.opened_at:%Y-%m-%d}{more}"
