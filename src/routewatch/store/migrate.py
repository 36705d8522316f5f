"""Engines and schema migrations: the one place that turns a database URL into a connection.

``create_engine_for`` applies the per-database settings (SQLite pragmas, the psycopg
driver for PostgreSQL); ``upgrade`` brings a database to the newest Alembic revision and
is what ``routewatch db upgrade`` calls; ``open_database``, what ``run``, ``demo`` and
the daemon call at start, upgrades only a database not already at ``SCHEMA_HEAD``.
Every other command leaves an existing database's schema alone: ``open_for_reading``
(``status``, ``report``, ``incidents``, ...) creates nothing either, and
``open_for_changes`` (``policy pin``, ``incidents resolve``) creates only a new one.
Failures raise ``DatabaseError`` naming the database with its password masked.

Alembic is imported only when a migration is read or applied: importing it (with Mako
and Pygments under it) costs about 0.2 s and 10 MB, which every command would
otherwise pay at start to learn that the database is already up to date.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from routewatch.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

SCHEMA_HEAD = "0009"
"""The newest revision in ``alembic/versions``. ``open_database`` compares a database's
revision with it without importing Alembic; ``tests/store/test_migrate.py`` keeps it
equal to Alembic's own head, so a new migration must update it."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite connection waits for another writer's lock before failing; runs
write in short transactions, so a long wait only happens when something is wrong."""

_URL_HINT = (
    "set database_url in routewatch.yaml or ROUTEWATCH_DATABASE_URL to sqlite:///PATH "
    "or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
)
_BACKENDS = ("sqlite", "postgresql")
_PG_CONNECT_TIMEOUT_S = "10"


def create_engine_for(url: str, *, for_migrations: bool = False, read_only: bool = False) -> Engine:
    """Create an engine for ``url`` with the settings routewatch relies on.

    SQLite connections enforce foreign keys, wait up to ``SQLITE_BUSY_TIMEOUT_MS`` for
    locks and use the WAL journal, so readers (``status``, reports) never block a run.
    ``postgresql://`` and ``postgres://`` URLs are given the psycopg 3 driver.

    Args:
        url: A SQLAlchemy database URL.
        for_migrations: On SQLite, turn foreign keys off (table rebuilds in batch
            migrations would otherwise cascade) and open every transaction with
            ``BEGIN IMMEDIATE``, so a migration is all-or-nothing and concurrent
            upgrades wait for each other.
        read_only: Refuse every write (SQLite's ``query_only``, PostgreSQL's read-only
            transactions) and leave a SQLite file's journal mode as it is.

    Returns:
        An engine; nothing is connected until it is used.

    Raises:
        DatabaseError: The URL cannot be parsed, is for neither SQLite nor PostgreSQL,
            or needs a driver that is not installed.
    """
    parsed = _parse(url)
    try:
        if parsed.get_backend_name() == "postgresql":
            if "connect_timeout" not in parsed.query:
                # Without one, connecting to a host that drops packets hangs for minutes.
                parsed = parsed.update_query_dict({"connect_timeout": _PG_CONNECT_TIMEOUT_S})
            if "client_encoding" not in parsed.query:
                # Text as UTF-8 whatever the database's encoding: on a SQL_ASCII database
                # psycopg hands back bytes, and SQLAlchemy's first query failed on them.
                parsed = parsed.update_query_dict({"client_encoding": "utf8"})
            engine = create_engine(parsed, pool_pre_ping=True)
            if read_only:
                # BEGIN READ ONLY on every transaction: unlike a session setting in the
                # URL's `options`, it keeps the URL's own and passes PgBouncer.
                engine = engine.execution_options(postgresql_readonly=True)
        else:
            if read_only:
                parsed = _sqlite_read_only(parsed)
            engine = create_engine(parsed)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise DatabaseError(
            f"cannot use database {masked(url)}: {_reason(exc, url)}; {_driver_hint(parsed)}"
        ) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, for_migrations=for_migrations, read_only=read_only)
    return engine


def open_read_only(url: str) -> tuple[Engine | None, str | None]:
    """A read-only engine on the database and the schema revision it is at, writing nothing.

    ``(None, None)`` when there is no routewatch database yet (a SQLite file not created,
    or no ``alembic_version`` table): nothing was created. A known older revision is
    returned as it is; the tables it has are read as they are.

    Raises:
        DatabaseError: the database cannot be reached, or is at a revision this version
            of routewatch does not know (a newer one wrote it).
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        return None, None
    engine = create_engine_for(url, read_only=True)
    try:
        with _connect(engine, url) as connection:
            try:
                versions = (
                    list(
                        connection.execute(
                            text("SELECT version_num FROM alembic_version")
                        ).scalars()
                    )
                    if inspect(connection).has_table("alembic_version")
                    else []
                )
            except SQLAlchemyError as exc:
                raise DatabaseError(
                    f"cannot read the schema revision of {masked(url)}: {_reason(exc, url)}"
                ) from exc
    except BaseException:
        engine.dispose()
        raise
    if not versions:
        engine.dispose()
        return None, None
    revision = str(versions[0])
    # Alembic is imported (0.2 s) only for a revision other than the newest.
    if revision != SCHEMA_HEAD and revision not in _known_revisions():
        engine.dispose()
        raise _newer(url, revision)
    return engine, revision


def _sqlite_read_only(parsed: URL) -> URL:
    """The SQLite URL opened read-only (``mode=ro``).

    Then the file is never written, not even by the checkpoint that the last connection
    to a WAL file makes when it closes (``query_only`` alone allows that).
    """
    database = parsed.database or ""
    if parsed.query.get("uri") not in ("true", "1"):
        database = "file:" + quote(database, safe="/")
    return parsed.set(database=database).update_query_dict({"mode": "ro", "uri": "true"})


def _refuse_unknown_revision(connection: Connection, url: str) -> None:
    """Raise ``DatabaseError`` when the database is at a revision this routewatch lacks."""
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is not None and revision not in _known_revisions():
        raise _newer(url, revision)


def _newer(url: str, revision: str) -> DatabaseError:
    return DatabaseError(
        f"database {masked(url)} is at schema revision {revision}, which this version of "
        f"routewatch ({SCHEMA_HEAD} at most) does not know: a newer routewatch wrote it; "
        "upgrade routewatch"
    )


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(script_location()))
    return {r.revision for r in scripts.walk_revisions()}


def upgrade(url: str) -> None:
    """Apply every Alembic revision up to the newest; does nothing if already there.

    Args:
        url: The database URL.

    Raises:
        DatabaseError: The database cannot be reached, or a migration failed (then
            nothing of that upgrade is kept).
    """
    from alembic import command
    from alembic.util import CommandError

    _make_sqlite_folder(url)
    config = _alembic_config()
    with _connection(url, for_migrations=True) as connection:
        try:
            with connection.begin():
                _refuse_unknown_revision(connection, url)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except (SQLAlchemyError, CommandError) as exc:
            raise DatabaseError(
                f"cannot migrate database {masked(url)} to revision {head_revision()}: "
                f"{_reason(exc, url)}; check that its user may create and alter tables "
                "and that no other program changed routewatch's tables"
            ) from exc


def open_database(url: str) -> Engine:
    """Bring the database to the newest schema and return an engine for it.

    Every command that reads or writes results starts here, so a new version's
    migrations apply by themselves. A database already at ``SCHEMA_HEAD`` is opened
    with one query and without importing Alembic; any other (new, older, newer, or
    one whose revision cannot be read) goes through ``upgrade``, which migrates it or
    says why it cannot.

    Raises:
        DatabaseError: the database cannot be reached or migrated.
    """
    engine = create_engine_for(url)
    if _at_head(engine, url):
        return engine
    engine.dispose()
    upgrade(url)
    return create_engine_for(url)


def open_for_reading(url: str) -> Engine:
    """A read-only engine for a command that only reads; it creates and migrates nothing.

    A database at ``SCHEMA_HEAD`` is opened as it is (SQLite ``mode=ro``, PostgreSQL
    read-only transactions). Where there is no routewatch database yet, the engine is
    an empty in-memory one at the newest schema: the command shows what an empty
    database holds and leaves no file or table behind.

    Raises:
        DatabaseError: the database cannot be reached, or is at an older revision (the
            message names ``routewatch db upgrade``) or a newer one.
    """
    engine, revision = open_read_only(url)
    if engine is None:
        return empty_database()
    if revision != SCHEMA_HEAD:
        engine.dispose()
        raise _older(url, str(revision))
    return engine


def open_for_changes(url: str) -> Engine:
    """An engine for a command that writes but does not own the schema (a pin, a resolve).

    A new database (no file yet, an empty file, or no tables) is created at the newest
    schema, as ``open_database`` does; an existing one must already be there: migrating
    it is for ``routewatch db upgrade`` (and ``run`` and the daemon, which do it at
    start), so that a newer command line pointed at a shared database never upgrades it
    under a daemon of the older version.

    Raises:
        DatabaseError: the database cannot be reached, is at an older or newer revision,
            or holds tables but no routewatch schema (another program's database).
    """
    engine = create_engine_for(url)
    if _at_head(engine, url):
        return engine
    engine.dispose()
    revision = current_revision(url)
    if revision is not None:
        if revision not in _known_revisions():
            raise _newer(url, revision)
        raise _older(url, revision)
    others = _table_names(url)
    if others:
        raise DatabaseError(
            f"database {masked(url)} holds tables ({', '.join(sorted(others)[:3])}"
            f"{', ...' if len(others) > 3 else ''}) but no routewatch schema: check "
            "database_url; `routewatch db upgrade` (or `routewatch run`) adds routewatch's "
            "tables there"
        )
    upgrade(url)
    return create_engine_for(url)


def _table_names(url: str) -> list[str]:
    """The tables of the database's default schema; none for a SQLite file not made yet."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        return []
    engine = create_engine_for(url, read_only=True)
    try:
        with _connect(engine, url) as connection:
            return list(inspect(connection).get_table_names())
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot read the tables of {masked(url)}: {_reason(exc, url)}"
        ) from exc
    finally:
        engine.dispose()


def empty_database() -> Engine:
    """An in-memory SQLite database at the newest schema, holding nothing.

    Built from the table definitions, which ``tests/store/test_migrate.py`` keeps equal
    to what the migrations create; the migrations store no rows of their own.
    """
    from sqlalchemy.pool import StaticPool

    from routewatch.store.tables import Base

    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    return engine


def _older(url: str, revision: str) -> DatabaseError:
    return DatabaseError(
        f"database {masked(url)} is at schema revision {revision}, older than this "
        f"routewatch's {SCHEMA_HEAD}: run `routewatch db upgrade` to migrate it "
        "(`routewatch run` and `routewatch serve` also do it at start); a routewatch of "
        "the older version still using it must be upgraded too"
    )


def _at_head(engine: Engine, url: str) -> bool:
    """True when the database's one Alembic revision is ``SCHEMA_HEAD``.

    False when it cannot be told cheaply: a SQLite file not created yet (connecting
    would create it), no ``alembic_version`` table, or the query failing otherwise;
    ``upgrade`` then runs and reports a real problem in its own words.

    Raises:
        DatabaseError: the database cannot be reached (raised here, not after a second
            attempt to connect inside ``upgrade``: that would double a connect timeout).
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        return False
    try:
        connection = _connect(engine, url)
    except DatabaseError:
        engine.dispose()
        raise
    with connection:
        try:
            versions = connection.execute(text("SELECT version_num FROM alembic_version"))
            return list(versions.scalars()) == [SCHEMA_HEAD]
        except SQLAlchemyError:
            return False


def current_revision(url: str) -> str | None:
    """Return the Alembic revision the database is at, or ``None`` if it has none.

    A SQLite file that does not exist yet is reported as ``None`` and not created.

    Raises:
        DatabaseError: The database cannot be reached.
    """
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite" and not _sqlite_file_exists(parsed):
        return None
    from alembic.runtime.migration import MigrationContext

    with _connection(url) as connection:
        try:
            return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"cannot read the schema revision of {masked(url)}: {_reason(exc, url)}"
            ) from exc


def head_revision() -> str:
    """Return the newest revision shipped with this version of routewatch."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(script_location()))
    head = scripts.get_current_head()
    if head is None:
        raise DatabaseError(f"no migrations found in {script_location()}; reinstall routewatch")
    return head


def script_location() -> Path:
    """Return the folder holding Alembic's ``env.py`` and ``versions/``.

    An installed wheel carries it as ``routewatch/_alembic``; a source checkout (an
    editable install) keeps it at the top of the repository.
    """
    package = Path(__file__).resolve().parents[1]
    installed = package / "_alembic"
    if installed.is_dir():
        return installed
    return package.parents[1] / "alembic"


def masked(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, safe to log or show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"cannot parse database URL {masked(url)!r}; {_URL_HINT}") from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in _BACKENDS:
        raise DatabaseError(
            f"cannot use database {masked(url)}: routewatch supports SQLite and PostgreSQL; "
            f"{_URL_HINT}"
        )
    return parsed


@contextmanager
def _connection(url: str, *, for_migrations: bool = False) -> Iterator[Connection]:
    engine = create_engine_for(url, for_migrations=for_migrations)
    try:
        with _connect(engine, url) as connection:
            yield connection
    finally:
        engine.dispose()


def _connect(engine: Engine, url: str) -> Connection:
    try:
        return engine.connect()
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"cannot connect to database {masked(url)}: {_reason(exc, url)}; "
            f"{_connect_hint(engine)}"
        ) from exc


def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite file to WAL (a lasting setting of the file), waiting out other writers.

    Changing the journal mode needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy handler, while another process holds it (two
    ``alembic upgrade`` started together on a new file). WAL persists, so only the first
    connection to a file ever has to switch; later ones find it already set.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _configure_sqlite(engine: Engine, *, for_migrations: bool, read_only: bool = False) -> None:
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        if for_migrations:
            # Let SQLAlchemy's BEGIN below, not the sqlite3 module, decide transactions.
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys = {'OFF' if for_migrations else 'ON'}")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        else:
            _enable_wal(cursor)
        cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    if for_migrations:
        event.listen(engine, "begin", on_begin)


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    # ConfigParser would read "%" as interpolation.
    config.set_main_option("script_location", str(script_location()).replace("%", "%%"))
    return config


def _make_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file, as creating the file itself would be expected to."""
    parsed = _parse(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return
    try:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of {masked(url)}: {exc}") from exc


def _sqlite_file_exists(url: URL) -> bool:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return True
    return Path(database).exists()


def _reason(exc: BaseException, url: str) -> str:
    """Describe ``exc`` in one line, without SQLAlchemy's links and without the password."""
    original = getattr(exc, "orig", None) or exc
    reason = " ".join(str(original).split()) or type(original).__name__
    password = _password(url)
    return reason.replace(password, "***") if password else reason


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _driver_hint(url: URL) -> str:
    if url.get_backend_name() == "postgresql":
        return "install the PostgreSQL driver with: pip install 'routewatch[postgres]'"
    return _URL_HINT


def _connect_hint(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return "check that the file's folder exists and that routewatch may write to it"
    return (
        "check that the server is running and reachable from here, and that the user, "
        "password and database name in the URL are right"
    )
