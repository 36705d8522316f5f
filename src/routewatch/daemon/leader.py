"""Electing the one replica that runs the schedules.

On PostgreSQL the leader holds a session advisory lock on a connection of its own, outside
any pool: a pooled connection would keep the lock after it is returned (ECOSYSTEM trap 7),
and a leader that dies loses it with its connection. On SQLite (one machine) the leader
holds an exclusive ``flock`` on a file beside the database. Either way a follower simply
tries again later. Exactly-once runs do not rest on this alone: every slot is claimed in
the database under a unique key, so even two leaders would not run a slot twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import IO

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from routewatch.store.migrate import create_engine_for

log = logging.getLogger("routewatch.daemon")

LOCK_KEY = 0x726F757465776174  # "routewat"
"""The advisory lock key every routewatch daemon on one database competes for."""


class Leadership:
    """Try to become (and stay) the scheduler leader for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self._backend = parsed.get_backend_name()
        self._database = parsed.database or ""
        self._conn: Connection | None = None
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this process is the leader (as of the last ``acquire`` or ``check``)."""
        return self._conn is not None or self._file is not None

    def acquire(self) -> bool:
        """Become the leader if nobody is; never blocks. Returns ``held``."""
        if self.held:
            return self.check()
        if self._backend == "postgresql":
            self._acquire_pg()
        elif self._backend == "sqlite" and self._database not in ("", ":memory:"):
            self._acquire_file(f"{self._database}.leader")
        else:
            self._file = open(os.devnull)  # noqa: SIM115 - an in-memory database is one process
        return self.held

    def check(self) -> bool:
        """Confirm the lock is still held (its connection may have died)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
            except SQLAlchemyError:
                log.warning("lost the scheduler lock: its database connection failed")
                self._drop_conn()
        return self.held

    def release(self) -> None:
        """Give up leadership (at shutdown)."""
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            self._drop_conn()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _acquire_pg(self) -> None:
        # The project's URL rules (the psycopg 3 driver), but no pool: see the module doc.
        probe = create_engine_for(self.url)
        engine = create_engine(probe.url, poolclass=NullPool)
        probe.dispose()
        try:
            conn = engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        except SQLAlchemyError as exc:
            log.warning("cannot try the scheduler lock: %s", type(exc).__name__)
            engine.dispose()
            return
        if got:
            self._conn = conn
        else:
            conn.close()
            engine.dispose()

    def _acquire_file(self, path: str) -> None:
        handle = open(path, "a")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return
        self._file = handle

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            engine = conn.engine
            with contextlib.suppress(SQLAlchemyError):
                conn.close()
            engine.dispose()
