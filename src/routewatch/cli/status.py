"""``routewatch status``: each route's state and last run; each policy's active chain."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from routewatch.cli.options import config_option
from routewatch.cli.table import format_table, num, pct, usd
from routewatch.config import load_config
from routewatch.status import RouteState, RouteStatus, StatusBody, read_status
from routewatch.store.migrate import open_for_reading


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status_command(config_path: Path, as_json: bool) -> None:
    """Per route: state, last run, baseline, open incident; per policy: active chain."""
    config = load_config(config_path, dict(os.environ))
    engine = open_for_reading(config.database_url)
    try:
        body, completed = read_status(engine, config)
    finally:
        engine.dispose()
    if as_json:
        click.echo(body.model_dump_json(indent=2))
        return
    click.echo(status_table(body, Learning(config.detection.min_baseline_runs, completed)))


@dataclass(frozen=True, slots=True)
class Learning:
    """What a route still learning its baseline has and needs."""

    min_baseline_runs: int
    completed: Mapping[str, int]
    """Completed runs per route, of its eval set with the fewest."""


def status_table(body: StatusBody, learning: Learning | None = None) -> str:
    """The human form of the status document.

    With ``learning``, a route still learning its baseline says how far it is. The
    figures are the last run's, whose eval set is named: a route with several shows the
    newest of them.
    """
    # A column of time to first token only when a route streams.
    ttft = any(r.last_run is not None and r.last_run.p50_ttft_ms is not None for r in body.routes)
    rows = []
    for r in body.routes:
        last = r.last_run
        rows.append(
            [
                r.route,
                _state_text(r, learning),
                last.at.strftime("%Y-%m-%d %H:%M") if last else "never",
                last.eval_set if last else "-",
                num(last.score, digits=3) if last else "-",
                pct(last.pass_rate) if last else "-",
                pct(last.error_rate) if last else "-",
                num(last.p95_latency_ms, " ms") if last else "-",
                *([num(last.p50_ttft_ms, " ms") if last else "-"] if ttft else []),
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
            "of eval set",
            "score",
            "pass",
            "errors",
            "p95",
            *(["ttft p50"] if ttft else []),
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
            [
                [
                    p.name,
                    p.mode,
                    " → ".join(p.active_chain) + (" (pinned)" if p.pins is not None else ""),
                    str(p.version),
                ]
                for p in body.policies
            ],
        )
    return text


def _state_text(route: RouteStatus, learning: Learning | None) -> str:
    state = route.state.value
    if route.no_data_since:
        return f"{state} (no data)"
    if route.state is not RouteState.unknown or route.last_run is None or learning is None:
        return state
    need = learning.min_baseline_runs
    done = learning.completed.get(route.route, 0)
    # A run is compared once `need` runs came before it: the next one, when `done` has
    # reached it (a backfill can bring it there without a run after).
    return f"{state} (learning: {done} run(s) so far; a run is compared once {need} came before it)"


def _incident_text(route: RouteStatus) -> str:
    incident = route.open_incident
    if incident is None:
        return "-"
    more = f" (+{incident.others_open} more)" if incident.others_open else ""
    return f"#{incident.id} {incident.metric} since {incident.opened_at:%Y-%m-%d}{more}"
