"""How the command line reports a mistake in its own arguments: one line, exit 1."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.config import load_config
from routewatch.sim.scenario import load_scenario
from routewatch.sim.server import listen


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--at", "yesterday"], "--at 'yesterday' is not an ISO 8601 time"),
        (["report", "--week", "2026-W54"], "--week '2026-W54': Invalid week: 54"),
        (["policy", "show", "nosuch"], "unknown policy 'nosuch'; known: chat"),
    ],
)
def test_a_bad_argument_is_one_error_line_and_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert run(["init", str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    assert run(argv) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}"), err
    assert err.count("\n") == 1, err  # no "(file)" field, no count of problems


def test_a_taken_port_is_a_runtime_failure_for_the_simulator_as_for_the_daemon(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]

        assert run(["sim", "serve", "--port", str(port)]) == 2

    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def test_a_run_in_the_future_is_refused_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped year would make every real run until then look like a backfill, which
    detection leaves alone: the route would page on nothing."""
    assert run(["init", str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    capsys.readouterr()

    assert run(["run", "--at", later]) == 1

    assert "is in the future" in capsys.readouterr().err
    assert not (tmp_path / "routewatch.db").exists()


def test_an_empty_at_is_refused_not_taken_as_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)

    assert run(["run", "--at", ""]) == 1

    assert "--at '' is not an ISO 8601 time" in capsys.readouterr().err


def test_init_names_the_next_step_without_a_cd_into_the_folder_it_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert run(["init"]) == 0
    steps = capsys.readouterr().out.split("next:")[1].splitlines()
    assert run(["init", "sub"]) == 0
    steps_sub = capsys.readouterr().out.split("next:")[1].splitlines()

    assert (steps[0], steps_sub[0]) == ("", " cd sub")
    # The simulator the example config calls is named: without it the first run fails.
    commands = [line.split("#")[0].strip() for line in steps[1:]]
    assert commands == [
        "routewatch validate",
        "routewatch sim serve --scenario sim-scenario.yaml &",
        "routewatch run",
    ]
    assert steps[1:] == steps_sub[1:]
    assert "port 8788" in steps[2]
    assert "http://127.0.0.1:8788/v1" in (tmp_path / "routewatch.yaml").read_text()
    # The scenario answers every model the config names, and its judge is exact.
    config = load_config(tmp_path / "routewatch.yaml", {})
    scenario = load_scenario(tmp_path / "sim-scenario.yaml")
    models = {r.model for r in config.routes.values()} | {j.model for j in config.judges.values()}
    assert models <= set(scenario.models)
    for judge in config.judges.values():
        assert scenario.models[judge.model].quality == 1.0


def test_validate_warns_about_a_config_without_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routewatch.yaml"
    config.write_text("")
    (tmp_path / "evals").mkdir()

    assert run(["validate", "-c", str(config)]) == 0

    assert "defines no routes, so `run` has nothing to replay" in capsys.readouterr().err
