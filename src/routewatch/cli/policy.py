"""``routewatch policy show|pin|unpin|export``: read and steer fallback policies by hand."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy import Engine

from routewatch.alerts.dispatch import Dispatcher, DispatchReport
from routewatch.cli.exit_codes import ExitCode
from routewatch.cli.options import config_option
from routewatch.cli.runs import delivery_lines
from routewatch.cli.table import format_table
from routewatch.config import Config, load_config
from routewatch.policy import manage
from routewatch.policy.publishers import describe
from routewatch.store.migrate import open_for_changes, open_for_reading
from routewatch.store.policies import (
    Reconciled,
    publish_targets,
    retry_publishers,
    sync_publishers,
    unpublished,
)


@click.group("policy")
def policy() -> None:
    """Read and steer fallback policies by hand."""


@policy.command("show")
@config_option
@click.argument("names", nargs=-1, metavar="[NAME]...")
def show_command(config_path: Path, names: tuple[str, ...]) -> None:
    """Configured chain, active chain, pins and history of each policy (or of NAME)."""
    config = load_config(config_path, dict(os.environ))
    engine = open_for_reading(config.database_url)
    try:
        views = manage.show(engine, config, names)
    finally:
        engine.dispose()
    if not views:
        click.echo("no policies configured (add `policies:` to routewatch.yaml)")
    for i, v in enumerate(views):
        if i:
            click.echo()
        click.echo(f"policy {v.name} ({v.mode} mode), version {v.version}")
        click.echo(f"  configured: {' → '.join(v.configured_chain)}")
        click.echo(f"  active:     {' → '.join(v.active_chain)}")
        click.echo(f"  pinned:     {' → '.join(v.pins) if v.pins else 'no'}")
        if v.history:
            rows = [
                [
                    str(h.version),
                    f"{h.created_at:%Y-%m-%d %H:%M}",
                    " → ".join(h.chain),
                    h.actor,
                    f"#{h.incident_id}" if h.incident_id else "-",
                    h.reason,
                ]
                for h in v.history
            ]
            table = format_table(["version", "at (UTC)", "chain", "by", "incident", "why"], rows)
            click.echo("  " + table.replace("\n", "\n  "))


@policy.command("pin")
@config_option
@click.argument("name")
@click.argument("routes", nargs=-1, required=True, metavar="ROUTE...")
def pin_command(config_path: Path, name: str, routes: tuple[str, ...]) -> int:
    """Pin policy NAME's active chain to ROUTE... until `unpin`.

    Exits 2 when the pin is stored but a publisher of NAME could not be written.
    """
    config = load_config(config_path, dict(os.environ))
    engine = open_for_changes(config.database_url)
    try:
        manage.check_pin(config, name, list(routes))
        sync_publishers(engine, config.policies, datetime.now(UTC))
        done = manage.pin(engine, config, name, list(routes))
        code = _report(engine, config, done)
        # Pinned on purpose, maybe, but say it: a pin outranks the incident's demotion.
        chain = config.policies[name].chain
        for warning in manage.pin_warnings(engine, routes, policy=name, chain=chain):
            click.echo(f"warning: {warning}", err=True)
    finally:
        engine.dispose()
    return code


@policy.command("unpin")
@config_option
@click.argument("name")
def unpin_command(config_path: Path, name: str) -> int:
    """Return policy NAME to its automatic chain.

    Exits 2 when the change is stored but a publisher of NAME could not be written.
    """
    config = load_config(config_path, dict(os.environ))
    engine = open_for_changes(config.database_url)
    try:
        manage.policy_of(config, name)
        sync_publishers(engine, config.policies, datetime.now(UTC))
        done = manage.unpin(engine, config, name)
        return _report(engine, config, done)
    finally:
        engine.dispose()


@policy.command("export")
@config_option
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "litellm"]),
    default="json",
    show_default=True,
    help="json: the policy file; litellm: a router_settings block for a LiteLLM proxy.",
)
def export_command(config_path: Path, name: str, fmt: str) -> None:
    """Print policy NAME's active chain."""
    config = load_config(config_path, dict(os.environ))
    engine = open_for_reading(config.database_url)
    try:
        click.echo(manage.export(engine, config, name, fmt))
    finally:
        engine.dispose()


def _report(engine: Engine, config: Config, done: Reconciled) -> int:
    """Say what changed, deliver, and fail when a publisher of the policy is not written."""
    name = done.policy
    if done.version is None:
        click.echo(f"policy {name}: nothing changed; active chain {_chain(done)}")
    else:
        click.echo(f"policy {name}: version {done.version}, active chain {_chain(done)}")
    policy = config.policies[name]
    # Also when nothing changed: a publisher that failed before is tried again, now.
    delivery = DispatchReport()
    if retry_publishers(engine, name, policy, datetime.now(UTC)) or done.version is not None:
        # The policy's publishers first: alerts to a slow receiver must not use up the
        # time before they are tried.
        delivery = Dispatcher(engine, config, dict(os.environ)).drain(
            config.alerts.delivery.run_wait_s, first=publish_targets(name, policy)
        )
        for line in delivery_lines(delivery):
            click.echo(line, err=True)
    failed = False
    for target, error in unpublished(engine, name, policy).items():
        key = target.rpartition(":")[2]
        publisher = next((p for p in policy.publish if p.key == key), None)
        label = describe(publisher) if publisher is not None else target
        if target not in delivery.failed_targets:  # not tried by this command
            click.echo(
                f"warning: policy {name}: {label} was not written by this command (another "
                "process may be writing it, or alerts.delivery.run_wait_s ran out); the "
                "change is stored, and the daemon or the next `routewatch run` writes it",
                err=True,
            )
            continue
        failed = True
        click.echo(
            f"error: policy {name}: {label} does not have the active chain yet ({error}); "
            "the change is stored, and the daemon or the next `routewatch run` tries again",
            err=True,
        )
    return ExitCode.failure if failed else ExitCode.ok


def _chain(done: Reconciled) -> str:
    return " → ".join(done.decision.chain)
