from pathlib import Path

import pytest
from sqlalchemy import inspect

from routewatch.cli import run
from routewatch.store.migrate import create_engine_for, current_revision, head_revision
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
