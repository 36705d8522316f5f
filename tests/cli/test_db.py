import json
from pathlib import Path

import pytest
from alembic import command as alembic_command
from alembic.config import Config
from sqlalchemy import inspect

from routewatch.cli import run
from routewatch.store.migrate import (
    create_engine_for,
    current_revision,
    head_revision,
    script_location,
)
from routewatch.store.tables import Base


def table_names(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_schema_and_repeating_changes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routewatch.yaml"
    config.write_text(f"database_url: {db_url}\n")

    first = run(["db", "upgrade", "-c", str(config)])
    tables = table_names(db_url)
    second = run(["db", "upgrade", "-c", str(config)])

    out = capsys.readouterr().out
    assert (first, second) == (0, 0)
    assert set(Base.metadata.tables) <= tables
    assert table_names(db_url) == tables
    assert current_revision(db_url) == head_revision()
    assert "nothing to do" in out.splitlines()[-1]


def test_db_upgrade_uses_the_environment_url_without_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("ROUTEWATCH_DATABASE_URL", url)

    code = run(["db", "upgrade", "-c", str(tmp_path / "absent.yaml")])

    assert code == 0
    assert current_revision(url) == head_revision()


def test_db_upgrade_of_an_unreachable_database_exits_2_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routewatch.yaml"
    config.write_text("database_url: postgresql+psycopg://u:s3cret@127.0.0.1:1/x\n")

    code = run(["db", "upgrade", "-c", str(config)])

    err = capsys.readouterr().err
    assert code == 2
    assert "s3cret" not in err
    assert "127.0.0.1" in err


def test_db_upgrade_creates_the_folder_of_a_sqlite_file(tmp_path: Path) -> None:
    config = tmp_path / "routewatch.yaml"
    config.write_text("database_url: sqlite:///data/nested/rw.db\n")

    assert run(["db", "upgrade", "-c", str(config)]) == 0

    assert (tmp_path / "data" / "nested" / "rw.db").is_file()


READING = [
    ["status"],
    ["status", "--json"],
    ["incidents"],
    ["incidents", "--all", "--json"],
    ["policy", "show"],
    ["policy", "export", "chat"],
    ["judge", "agreement"],
    ["report", "-o", "{dir}/week.html"],
]
"""Commands that only read the database, with their arguments."""


def init_project(tmp_path: Path, db_url: str | None = None) -> Path:
    """``routewatch init`` in ``tmp_path``; on ``db_url`` instead of its SQLite file if given."""
    assert run(["init", str(tmp_path)]) == 0
    config = tmp_path / "routewatch.yaml"
    if db_url is not None:
        text = config.read_text()
        config.write_text(text.replace("sqlite:///routewatch.db", db_url, 1))
    return config


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_a_reading_command_in_a_new_project_creates_no_database(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = init_project(tmp_path)
    capsys.readouterr()

    code = run([*(a.format(dir=tmp_path) for a in command), "-c", str(config)])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not (tmp_path / "routewatch.db").exists()
    assert not list(tmp_path.glob("routewatch.db*"))


def test_reading_commands_in_a_new_postgresql_database_create_no_table(
    pg_url: str, tmp_path: Path
) -> None:
    config = init_project(tmp_path, pg_url)

    for command in READING:
        assert run([*(a.format(dir=tmp_path) for a in command), "-c", str(config)]) == 0

    assert table_names(pg_url) == set()


def test_status_of_a_new_project_lists_its_routes_as_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = init_project(tmp_path)
    capsys.readouterr()

    assert run(["status", "-c", str(config), "--json"]) == 0

    body = json.loads(capsys.readouterr().out)
    assert [(r["route"], r["state"], r["last_run"]) for r in body["routes"]] == [
        ("chat-flash", "unknown", None),
        ("chat-pro", "unknown", None),
        ("chat-premium", "unknown", None),
    ]
    assert body["policies"][0]["active_chain"] == ["chat-flash", "chat-pro", "chat-premium"]


def _older_database(tmp_path: Path, db_url: str) -> Path:
    config = init_project(tmp_path, db_url)
    assert run(["db", "upgrade", "-c", str(config)]) == 0
    engine = create_engine_for(db_url, for_migrations=True)
    alembic = Config()
    alembic.set_main_option("script_location", str(script_location()))
    with engine.begin() as connection:
        alembic.attributes["connection"] = connection
        alembic_command.downgrade(alembic, "0008")
    engine.dispose()
    return config


CHANGING = [["policy", "pin", "chat", "chat-pro"], ["policy", "unpin", "chat"]]


def test_commands_other_than_run_or_upgrade_leave_an_older_schema_alone(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each reading or changing command refuses it, naming `db upgrade`; after that they
    work again. One database for them all: a refusal changes nothing to reset."""
    config = _older_database(tmp_path, db_url)
    capsys.readouterr()

    for command in [*READING, *CHANGING]:
        code = run([*(a.format(dir=tmp_path) for a in command), "-c", str(config)])

        err = capsys.readouterr().err
        assert code == 2, command
        assert "schema revision 0008, older than this routewatch's" in err, command
        assert "run `routewatch db upgrade`" in err, command
        assert current_revision(db_url) == "0008", command

    assert run(["db", "upgrade", "-c", str(config)]) == 0
    assert run(["status", "-c", str(config)]) == 0
    assert current_revision(db_url) == head_revision()
