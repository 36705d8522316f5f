from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from routewatch.errors import DatabaseError
from routewatch.store.migrate import (
    SCHEMA_HEAD,
    create_engine_for,
    current_revision,
    head_revision,
    open_database,
    open_for_changes,
    open_for_reading,
    open_read_only,
    script_location,
    upgrade,
)
from routewatch.store.tables import (
    Base,
    EvalItemRow,
    EvalSetRow,
    ResultRow,
    RunRow,
    SchedulerLeaseRow,
)
from store_rows import add_run


def table_names(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_table(db_url: str) -> None:
    upgrade(db_url)

    assert table_names(db_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_leaves_the_database_at_head(db_url: str) -> None:
    upgrade(db_url)

    assert current_revision(db_url) == head_revision() == "0009"


def test_current_revision_of_an_empty_database_is_none(db_url: str) -> None:
    assert current_revision(db_url) is None


def test_current_revision_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"

    assert current_revision(f"sqlite:///{path}") is None
    assert not path.exists()


def test_upgrade_twice_keeps_revision_and_data(db_url: str) -> None:
    upgrade(db_url)
    engine = create_engine_for(db_url)
    lease = SchedulerLeaseRow(name="scheduler", owner="a", expires_at=datetime.now(UTC))
    with Session(engine) as session, session.begin():
        session.add(lease)

    upgrade(db_url)

    with Session(engine) as session:
        assert session.scalars(select(SchedulerLeaseRow.owner)).all() == ["a"]
    engine.dispose()
    assert current_revision(db_url) == head_revision()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    engine = create_engine_for(db_url)

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    engine.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table(db_url: str) -> None:
    upgrade(db_url)

    _alembic(db_url, "downgrade", "base")

    assert table_names(db_url) == {"alembic_version"}


def _alembic(db_url: str, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    engine = create_engine_for(db_url, for_migrations=True)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)
    engine.dispose()


def test_upgrade_from_0001_keeps_incidents_and_adds_their_streak(db_url: str) -> None:
    """Revisions 0002 and 0003 alter ``incidents`` in place (a table rebuild on SQLite)."""
    _alembic(db_url, "upgrade", "0001")
    engine = create_engine_for(db_url)
    with engine.begin() as conn:
        for statement in [*SEED_0001.split(";"), INCIDENT_0001]:
            if statement.strip():
                conn.execute(text(statement))

    upgrade(db_url)

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT metric, healthy_streak, last_run_id, notified_at FROM incidents")
        ).one()
    engine.dispose()
    assert tuple(row[:3]) == ("score", 0, None)
    assert row.notified_at is not None, "an open incident counts as notified when it opened"
    assert current_revision(db_url) == head_revision()


def test_downgrade_from_0002_to_0001_drops_detection_tables(db_url: str) -> None:
    upgrade(db_url)

    _alembic(db_url, "downgrade", "0001")

    assert "detections" not in table_names(db_url)
    assert "item_outcomes" not in table_names(db_url)
    assert "incidents" in table_names(db_url)


SEED_0001 = """
INSERT INTO eval_sets (id, name, version, scale_min, scale_max, pass_threshold, definition,
    created_at) VALUES (1, 'faq', 'v', 1, 5, 0.5, '{}', '2026-11-01 00:00:00+00:00');
INSERT INTO route_snapshots (id, route, provider, model, params, config_hash, first_seen_at)
    VALUES (1, 'r', 'p', 'm', '{}', 'h', '2026-11-01 00:00:00+00:00');
INSERT INTO runs (id, route, route_snapshot_id, eval_set_id, eval_set_name, slot_key, at,
    started_at, status, judge_suspect, partially_judged) VALUES (1, 'r', 1, 1, 'faq', 's',
    '2026-11-01 00:00:00+00:00', '2026-11-01 00:00:00+00:00', 'completed', false, false);
"""
INCIDENT_0001 = """
INSERT INTO incidents (id, route, eval_set_name, metric, detector, status, opened_at,
    opening_run_id, observed, severity, detail) VALUES (1, 'r', 'faq', 'score', 'sigma',
    'open', '2026-11-01 00:00:00+00:00', 1, 0.5, 'page', '{}')
"""


def test_unreachable_server_raises_database_error_without_the_password() -> None:
    with pytest.raises(DatabaseError, match="cannot connect") as raised:
        upgrade("postgresql+psycopg://u:s3cret@127.0.0.1:1/x")

    assert "s3cret" not in str(raised.value)
    assert "postgresql+psycopg://u:***@127.0.0.1:1/x" in str(raised.value)


def test_unknown_driver_raises_database_error_without_the_password() -> None:
    with pytest.raises(DatabaseError, match="cannot use database") as raised:
        upgrade("nosuchdb://u:s3cret@localhost/x")

    assert "s3cret" not in str(raised.value)


def test_unparsable_url_raises_database_error() -> None:
    with pytest.raises(DatabaseError, match="cannot parse database URL"):
        upgrade("not a url")


def test_sqlite_file_whose_folder_cannot_be_made_raises_database_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    url = f"sqlite:///{tmp_path / 'taken' / 'routewatch.db'}"

    with pytest.raises(DatabaseError, match="cannot create the folder"):
        upgrade(url)


def test_schema_head_is_alembics_newest_revision() -> None:
    # A new migration that forgets SCHEMA_HEAD would leave databases un-upgraded.
    assert head_revision() == SCHEMA_HEAD


def test_open_database_upgrades_a_database_at_an_older_revision(db_url: str) -> None:
    upgrade(db_url)
    _alembic(db_url, "downgrade", "0005")
    assert current_revision(db_url) == "0005"

    open_database(db_url).dispose()

    assert current_revision(db_url) == SCHEMA_HEAD
    assert "pairwise_preferences" in table_names(db_url)


@pytest.mark.parametrize("opener", [open_database, open_for_changes])
def test_a_new_sqlite_file_is_created_at_head(
    tmp_path: Path, opener: Callable[[str], Engine]
) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'routewatch.db'}"

    opener(url).dispose()

    assert current_revision(url) == SCHEMA_HEAD


@pytest.mark.parametrize("opener", [open_database, open_for_reading, open_for_changes])
def test_a_database_from_a_newer_routewatch_is_refused(
    db_url: str, opener: Callable[[str], Engine]
) -> None:
    upgrade(db_url)
    engine = create_engine_for(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(
        DatabaseError, match=r"at schema revision 9999, .* a newer routewatch wrote it;"
    ):
        opener(db_url)

    assert current_revision(db_url) == "9999"


def test_opening_an_up_to_date_database_does_not_import_alembic(db_url: str) -> None:
    upgrade(db_url)
    probe = (
        "import sys\n"
        "from routewatch.store.migrate import open_database, open_for_changes, open_for_reading\n"
        f"open_database({db_url!r}).dispose()\n"
        f"open_for_reading({db_url!r}).dispose()\n"
        f"open_for_changes({db_url!r}).dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout

    assert out.strip() == "[]"


def test_open_database_on_an_unreachable_server_names_it_without_the_password() -> None:
    with pytest.raises(DatabaseError, match="cannot connect") as raised:
        open_database("postgresql+psycopg://u:s3cret@127.0.0.1:1/x")

    assert "s3cret" not in str(raised.value)


@pytest.mark.postgres
def test_a_sql_ascii_database_opens_and_keeps_text_as_text(pg_server_url: str) -> None:
    """Older clusters made in the C locale default to SQL_ASCII: psycopg returned bytes
    there, and the first query (the server's version) crashed with a TypeError."""
    name = f"routewatch_ascii_{secrets.token_hex(4)}"
    admin = create_engine_for(pg_server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"CREATE DATABASE \"{name}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0"
        )
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = open_database(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 'né'")).scalar_one() == "né"
        engine.dispose()
        assert current_revision(url) == SCHEMA_HEAD
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.engine.dispose()


def test_upgrade_to_0009_gives_stored_runs_their_time_to_first_token(db_url: str) -> None:
    """Streamed runs stored before 0009 get p50/p95 TTFT from their answered results."""
    _alembic(db_url, "upgrade", "0008")
    engine = create_engine_for(db_url)
    at = datetime(2026, 11, 9, 6, tzinfo=UTC)
    add_run(engine, "streamed", at)
    add_run(engine, "plain", at)
    with engine.begin() as conn:
        runs = {r.route: r.id for r in conn.execute(select(RunRow.route, RunRow.id))}
        item = conn.execute(
            insert(EvalItemRow)
            .values(
                eval_set_id=conn.execute(select(EvalSetRow.id).limit(1)).scalar_one(),
                item_id="q1",
                item_hash="h",
                position=0,
                weight=1.0,
                critical=False,
                definition={},
            )
            .returning(EvalItemRow.id)
        ).scalar_one()
        rows: list[tuple[str, float | None, str | None]]
        rows = [("streamed", ttft, None) for ttft in (40.0, 10.0, 30.0, 20.0)]
        rows += [("streamed", 999.0, "timeout"), ("plain", None, None)]
        for sample, (route, ttft, error) in enumerate(rows):
            conn.execute(
                insert(ResultRow).values(
                    run_id=runs[route],
                    eval_item_id=item,
                    item_id="q1",
                    sample=sample,
                    latency_ms=100.0,
                    ttft_ms=ttft,
                    attempts=1,
                    error_class=error,
                )
            )

    upgrade(db_url)

    with engine.connect() as conn:
        found = {
            r.route: (r.p50_ttft_ms, r.p95_ttft_ms)
            for r in conn.execute(text("SELECT route, p50_ttft_ms, p95_ttft_ms FROM runs"))
        }
    engine.dispose()
    assert found["streamed"] == (25.0, pytest.approx(38.5)), "the timed-out call left out"
    assert found["plain"] == (None, None)


def test_a_read_only_engine_refuses_writes(db_url: str) -> None:
    upgrade(db_url)
    engine, revision = open_read_only(db_url)
    assert engine is not None
    try:
        assert revision == SCHEMA_HEAD
        with engine.connect() as conn, pytest.raises(SQLAlchemyError):
            conn.execute(text("CREATE TABLE written (x INTEGER)"))
    finally:
        engine.dispose()


def test_no_database_yet_is_told_without_creating_one(tmp_path: Path) -> None:
    assert open_read_only(f"sqlite:///{tmp_path / 'none.db'}") == (None, None)
    assert not (tmp_path / "none.db").exists()


def test_reading_where_there_is_no_database_creates_nothing(db_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}" if db_url.startswith("sqlite") else db_url

    engine = open_for_reading(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    finally:
        engine.dispose()

    assert not (tmp_path / "none.db").exists()
    if not db_url.startswith("sqlite"):
        assert table_names(url) == set()


def test_reading_an_older_schema_names_the_upgrade_and_migrates_nothing(db_url: str) -> None:
    upgrade(db_url)
    _alembic(db_url, "downgrade", "0008")

    with pytest.raises(
        DatabaseError, match=r"at schema revision 0008, older .* run `routewatch db upgrade`"
    ):
        open_for_reading(db_url)
    with pytest.raises(DatabaseError, match=r"run `routewatch db upgrade`"):
        open_for_changes(db_url)

    assert current_revision(db_url) == "0008"


def test_changing_a_database_of_another_program_adds_no_table(db_url: str) -> None:
    engine = create_engine_for(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
    engine.dispose()

    with pytest.raises(DatabaseError, match=r"holds tables \(customers\) but no routewatch schema"):
        open_for_changes(db_url)

    assert table_names(db_url) == {"customers"}


def test_changing_an_empty_sqlite_file_creates_the_schema(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    url = f"sqlite:///{tmp_path / 'empty.db'}"

    open_for_changes(url).dispose()

    assert current_revision(url) == SCHEMA_HEAD
