"""``routewatch db upgrade``: bring the database schema up to date."""

from __future__ import annotations

import os
from pathlib import Path

import click

from routewatch.cli.options import config_option
from routewatch.config import DATABASE_URL_ENV, load_config
from routewatch.store.migrate import current_revision, upgrade


@click.group()
def db() -> None:
    """Manage the result database."""


@db.command("upgrade")
@config_option
def upgrade_command(config_path: Path) -> None:
    """Apply every pending migration (safe to repeat; run and serve also do it).

    Without a config file, ROUTEWATCH_DATABASE_URL alone names the database.
    """
    env = dict(os.environ)
    if not config_path.exists() and env.get(DATABASE_URL_ENV):
        url = env[DATABASE_URL_ENV]
    else:
        url = load_config(config_path, env).database_url
    before = current_revision(url)
    upgrade(url)
    after = current_revision(url)
    if before == after:
        click.echo(f"database already at revision {after}; nothing to do")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to revision {after}")
