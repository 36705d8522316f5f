"""Database fixtures: ``db_url`` runs a test on SQLite and on PostgreSQL.

PostgreSQL comes from ROUTEWATCH_TEST_DATABASE_URL (a server and a database this user may
connect to and create databases from). Without it the PostgreSQL half is skipped, except
in CI, where it fails: CI must test both. Each session (each pytest-xdist worker is one)
creates its own database on that server and drops it at the end; each test gets an empty
``public`` schema in it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from routewatch.store.migrate import create_engine_for

PG_URL_VAR = "ROUTEWATCH_TEST_DATABASE_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _skip_or_fail(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"{reason} (CI must test PostgreSQL)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The URL from ROUTEWATCH_TEST_DATABASE_URL, checked to be reachable."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        _skip_or_fail(
            f"{PG_URL_VAR} is not set; set it to e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test to test PostgreSQL"
        )
    engine = create_engine_for(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        _skip_or_fail(f"PostgreSQL at {make_url(url).render_as_string()} is unreachable: {reason}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def pg_session_url(pg_server_url: str) -> Iterator[str]:
    """A database of this test session's own, dropped when the session ends."""
    name = f"routewatch_test_{secrets.token_hex(6)}"
    admin = create_engine_for(pg_server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.engine.dispose()


@pytest.fixture(scope="session")
def pg_admin_engine(pg_session_url: str) -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the session's database, for resetting it."""
    engine = create_engine_for(pg_session_url).execution_options(isolation_level="AUTOCOMMIT")
    yield engine
    engine.engine.dispose()


@pytest.fixture
def pg_url(pg_session_url: str, pg_admin_engine: Engine) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    with pg_admin_engine.connect() as connection:
        # A connection a failed test left open could hold locks and block the reset.
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        connection.exec_driver_sql("DROP SCHEMA public CASCADE")
        connection.exec_driver_sql("CREATE SCHEMA public")
    return pg_session_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once on SQLite (a file) and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'routewatch.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
