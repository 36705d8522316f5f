"""``routewatch init`` and ``routewatch validate``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from routewatch.cli.options import config_option
from routewatch.config import publisher_clashes, unset_secrets
from routewatch.project import load_project
from routewatch.scaffold import write_project


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, force: bool) -> None:
    """Write a commented routewatch.yaml, an example eval set and a simulator scenario."""
    for path in write_project(directory, force=force):
        click.echo(f"wrote {path}")
    here = directory.resolve() == Path.cwd().resolve()
    click.echo("next:" if here else f"next: cd {directory}")
    click.echo("  routewatch validate     # checks the config and the eval set")
    click.echo(
        "  routewatch sim serve --scenario sim-scenario.yaml &  # the simulator the example "
        "routes call (port 8788); or point providers at your gateway"
    )
    click.echo("  routewatch run          # replays the eval set against every route")


@click.command()
@config_option
def validate(config_path: Path) -> None:
    """Check the config and every eval set; print each problem as file:line: field: message."""
    project = load_project(config_path, dict(os.environ))
    config = project.config
    click.echo(
        f"{config_path}: ok: {len(config.routes)} route(s), {len(config.providers)} "
        f"provider(s), {len(config.judges)} judge(s), {len(config.policies)} policy(ies)"
    )
    for evalset in project.eval_sets.values():
        click.echo(
            f"  eval set {evalset.name} version {evalset.version}: {len(evalset.items)} item(s)"
        )
    if not config.routes:
        click.echo(
            f"warning: {config_path} defines no routes, so `run` has nothing to replay; "
            "`routewatch init` writes an example",
            err=True,
        )
    for problem in unset_secrets(config, os.environ, daemon=False):
        click.echo(f"warning: {problem}", err=True)
    for clash in publisher_clashes(config):
        click.echo(f"warning: {clash}", err=True)
    for name, policy in config.policies.items():
        for publisher in policy.publish:
            if publisher.type != "litellm" or not publisher.path:
                continue
            if not _exists(Path(publisher.path)):
                click.echo(
                    f"warning: policy {name}: the litellm publisher's file {publisher.path} does "
                    "not exist; it edits an existing LiteLLM proxy config, so every publish "
                    "will fail until it does",
                    err=True,
                )
                continue
            # Imported here: ruamel.yaml and httpx only for a config that needs them.
            from routewatch.policy.publishers import PolicyState, litellm_target_problems

            state = PolicyState(
                policy=name,
                version=0,
                updated_at=datetime.now(UTC),
                chain=tuple(policy.chain),
                configured_chain=tuple(policy.chain),
                demoted=(),
                models={r: config.routes[r].model for r in policy.chain},
            )
            for problem in litellm_target_problems(publisher, state):
                click.echo(
                    f"warning: policy {name}: litellm publisher {publisher.path}: {problem}",
                    err=True,
                )


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; True when it cannot be told (the edit then says why)."""
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True
