"""Alembic environment for routewatch's store.

Two ways in: ``routewatch.store.migrate.upgrade`` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line (run from the
repository root) builds an engine from ROUTEWATCH_DATABASE_URL, else
``sqlite:///routewatch.db``. Either way a migration runs in one transaction.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, text

from routewatch.errors import DatabaseError
from routewatch.store.migrate import create_engine_for
from routewatch.store.tables import Base

DEFAULT_URL = "sqlite:///routewatch.db"

# Any fixed number: the advisory lock that makes concurrent upgrades on one PostgreSQL
# database wait for each other instead of racing to create the same tables.
MIGRATION_LOCK_KEY = 0x726F757465  # "route"

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Compare only routewatch's tables; others sharing the database are not ours."""
    if type_ == "table":
        return name in target_metadata.tables
    return True


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can ALTER little; batch mode rebuilds the table
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            # Foreign keys are off while migrating SQLite; prove nothing was orphaned.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise DatabaseError(
                    f"the migration left rows whose foreign keys point nowhere: {broken}; "
                    "nothing was changed, report this as a routewatch bug"
                )


def run_migrations_offline() -> None:
    context.configure(
        url=os.environ.get("ROUTEWATCH_DATABASE_URL") or DEFAULT_URL,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_engine_for(
        os.environ.get("ROUTEWATCH_DATABASE_URL") or DEFAULT_URL, for_migrations=True
    )
    try:
        with engine.connect() as connection, connection.begin():
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
