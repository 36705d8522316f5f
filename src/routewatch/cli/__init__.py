"""The ``routewatch`` command: the group, ``main`` and the mapping of errors to exit codes.

Command modules parse arguments, call one function and print. Only ``main`` turns
exceptions into exit codes: 0 success, 1 bad input, 2 runtime failure,
3 a regression found with ``--fail-on-regression``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from routewatch import __version__
from routewatch.cli.exit_codes import ExitCode
from routewatch.errors import InputError, RoutewatchError, UsageError

COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": (
        "routewatch.cli.project",
        "init",
        "Write a commented routewatch.yaml, an example eval set and a simulator scenario.",
    ),
    "validate": (
        "routewatch.cli.project",
        "validate",
        "Check the config and every eval set; print each problem as file:line: field: message.",
    ),
    "db": ("routewatch.cli.db", "db", "Manage the result database."),
    "sim": (
        "routewatch.cli.sim",
        "sim",
        "The built-in simulated OpenAI-compatible provider (no keys, no network).",
    ),
    "run": (
        "routewatch.cli.runs",
        "run_command",
        "One cycle now: replay each route's eval sets, score, store, detect, print a summary.",
    ),
    "status": (
        "routewatch.cli.status",
        "status_command",
        "Per route: state, last run, baseline, open incident; per policy: active chain.",
    ),
    "demo": (
        "routewatch.cli.demo",
        "demo_command",
        "Keyless demo: three routes, two eval sets, a breakage, its alert and the report.",
    ),
    "policy": ("routewatch.cli.policy", "policy", "Read and steer fallback policies by hand."),
    "serve": (
        "routewatch.cli.serve",
        "serve_command",
        "Run the daemon: scheduled runs, alert delivery and the HTTP server, until SIGTERM.",
    ),
    "report": (
        "routewatch.cli.report",
        "report_command",
        "Write the HTML report: quality, cost and latency per route, incidents, policy changes.",
    ),
    "judge": ("routewatch.cli.judge", "judge", "The judge's own quality."),
    "incidents": (
        "routewatch.cli.incidents",
        "incidents_command",
        "List open incidents (with --all, resolved ones too), newest first.",
    ),
    "alerts": (
        "routewatch.cli.alerts",
        "alerts",
        "Check alert delivery: send a test event to every target.",
    ),
}
"""Each command: the module that defines it, its attribute there, and the first paragraph
of its help (what ``routewatch --help`` lists; ``tests/test_cli_lazy.py`` keeps it equal
to the command's own)."""


class LazyGroup(click.Group):
    """The command group, importing a command's module only when that command is used.

    The commands between them import scipy, SQLAlchemy, uvicorn and jinja2; importing
    all of them made every invocation, ``--help`` included, take seconds before doing
    anything. ``--help`` lists commands from ``COMMANDS`` without importing them.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, without importing any."""
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module now; None if there is none."""
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of ``--help``, as click writes it, from ``COMMANDS``."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                # A bare command with the same help text shortens it as click would.
                summary = click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)
            else:
                command = super().get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                summary = command.get_short_help_str(limit)
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="routewatch")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Watch the quality of LLM routes: replay eval sets, score, store, detect, alert.

    Exit codes: 0 success, 1 bad input, 2 runtime failure, 3 regression found
    (with --fail-on-regression).
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with its code."""
    sys.exit(run(argv))


INTERRUPTED = 130
"""Exit code after Ctrl-C (SIGINT), as shells report it."""


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code instead of exiting."""
    try:
        result = cli.main(args=argv, prog_name="routewatch", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            # Ctrl-C: click turns it into Abort. The shell's convention, 128 + SIGINT.
            click.echo("interrupted", err=True)
            return INTERRUPTED
        click.echo("aborted", err=True)
        return ExitCode.bad_input
    except click.ClickException as exc:
        exc.show()
        return ExitCode.bad_input
    except UsageError as exc:
        # An argument, not a file: no "file:line: field:" and no count of problems.
        click.echo(f"error: {exc}", err=True)
        return ExitCode.bad_input
    except InputError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        count = len(exc.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        return ExitCode.bad_input
    except RoutewatchError as exc:
        click.echo(f"error: {exc}", err=True)
        return ExitCode.failure
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return INTERRUPTED
    except Exception:
        click.echo("internal error (a bug in routewatch; please report it):", err=True)
        click.echo(traceback.format_exc(), err=True)
        return ExitCode.failure
    return int(result) if isinstance(result, int) else ExitCode.ok


from routewatch.cli import pending  # noqa: E402

for command in pending.COMMANDS:
    cli.add_command(command)
