"""A secret's value never reaches the database, the output or the logs."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.tables import Base
from runner_project import SIM_SCENARIO, rows, write_project

SECRET = "sk-live-DO-NOT-LEAK-4242"


@pytest.fixture
def sim() -> Iterator[str]:
    with serve_in_thread(create_app(parse_scenario(SIM_SCENARIO), {})) as url:
        yield url


@pytest.mark.parametrize("model", ["perfect", "failing", "html"])
def test_the_api_key_is_never_stored_printed_or_logged(
    tmp_path: Path,
    sim: str,
    model: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RW_TEST_KEY", SECRET)
    config = write_project(
        tmp_path, sim, {"r": {"model": model}}, provider={"api_key_env": "RW_TEST_KEY"}
    )
    caplog.set_level(logging.DEBUG)

    # Every call of a failing model fails: the run is stored and `run` exits 2, and its
    # line naming the first error is checked for the key below too.
    expected = 0 if model == "perfect" else 2
    assert run(["-vv", "run", "-c", str(config), "--at", "2026-11-01T06:00:00Z"]) == expected
    assert run(["status", "-c", str(config), "--json"]) == 0

    out = capsys.readouterr()
    dumped = repr([rows(f"sqlite:///{tmp_path / 'rw.db'}", t) for t in Base.metadata.tables])
    for text in (
        dumped,
        out.out,
        out.err,
        caplog.text,
        (tmp_path / "rw.db").read_bytes().decode("latin-1"),
    ):
        assert SECRET not in text
