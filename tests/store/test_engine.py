from __future__ import annotations

from pathlib import Path

import pytest

from routewatch.store.migrate import create_engine_for, masked


@pytest.mark.parametrize("url", ["postgres://u@db/routewatch", "postgresql://u@db/routewatch"])
def test_postgres_urls_get_the_psycopg_driver(url: str) -> None:
    engine = create_engine_for(url)

    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


@pytest.mark.parametrize(("pragma", "expected"), [("foreign_keys", 1), ("journal_mode", "wal")])
def test_sqlite_connections_are_configured(tmp_path: Path, pragma: str, expected: object) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'routewatch.db'}")

    with engine.connect() as connection:
        value = connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()

    engine.dispose()
    assert value == expected


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:s3cret@db:5432/rw", "postgresql+psycopg://u:***@db:5432/rw"),
        ("sqlite:///routewatch.db", "sqlite:///routewatch.db"),
        ("not a url://u:s3cret@db", "not a url://u:***@db"),
    ],
)
def test_masked_hides_the_password(url: str, shown: str) -> None:
    assert masked(url) == shown
