"""The command group loads each command only when it is used, and lists them all truly."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest

from routewatch.cli import COMMANDS, cli

HEAVY = ("scipy", "sqlalchemy", "uvicorn", "jinja2", "aiohttp", "pydantic", "apscheduler")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_first_paragraph_of_the_commands_own_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)

    assert command is not None
    assert command.name == name
    first = (command.help or "").split("\n\n")[0]
    assert COMMANDS[name][2] == " ".join(first.split())


@pytest.mark.parametrize(("argv", "exit_code"), [(["--help"], 0), (["--version"], 0), ([], 1)])
def test_help_and_version_import_no_command(argv: list[str], exit_code: int) -> None:
    code = (
        "import sys\n"
        "from routewatch.cli import run\n"
        f"code = run({argv!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.splitlines()[-1] == f"[] {exit_code}"
    if argv != ["--version"]:  # no command at all shows the help too, as a usage error
        assert re.search(
            r"validate +Check the config and every eval set", done.stdout + done.stderr
        )


def test_a_command_loads_only_what_it_needs() -> None:
    code = (
        "import sys\n"
        "from routewatch.cli import run\n"
        "code = run(['sim', '--help'])\n"
        "print('scipy' in sys.modules, 'sqlalchemy' in sys.modules, code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.splitlines()[-1] == "False False 0"
