"""The ``alembic`` command line, run from the repository root as developers run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table

from routewatch.store.migrate import create_engine_for, current_revision, head_revision, upgrade

REPO = Path(__file__).resolve().parents[2]


def alembic(*args: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO,
        env={**os.environ, "ROUTEWATCH_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_upgrade_head_from_the_repository_root(db_url: str) -> None:
    finish(alembic("upgrade", "head", url=db_url))

    assert current_revision(db_url) == head_revision()


def test_concurrent_upgrades_both_succeed(db_url: str) -> None:
    first = alembic("upgrade", "head", url=db_url)
    second = alembic("upgrade", "head", url=db_url)

    finish(first)
    finish(second)
    assert current_revision(db_url) == head_revision()


def test_check_ignores_tables_routewatch_does_not_own(db_url: str) -> None:
    """Autogenerate must not offer to drop a scheduler's tables (ECOSYSTEM trap 6)."""
    upgrade(db_url)
    foreign = MetaData()
    Table("apscheduler_jobs", foreign, Column("id", Integer, primary_key=True))
    engine = create_engine_for(db_url)
    foreign.create_all(engine)
    engine.dispose()

    output = finish(alembic("check", url=db_url))

    assert "No new upgrade operations detected" in output
