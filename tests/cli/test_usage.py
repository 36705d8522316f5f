"""How the command line reports a mistake in its own arguments: one line, exit 1."""

from pathlib import Path

import pytest

from routewatch.cli import run
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
