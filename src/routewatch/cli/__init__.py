"""The ``routewatch`` command: the group, ``main`` and the mapping of errors to exit codes.

Command modules parse arguments, call one function and print. Only ``main`` turns
exceptions into exit codes: 0 success, 1 bad input, 2 runtime failure,
3 a regression found with ``--fail-on-regression``.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from routewatch import __version__
from routewatch.cli.exit_codes import ExitCode
from routewatch.errors import InputError, RoutewatchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def run(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code instead of exiting."""
    try:
        result = cli.main(args=argv, prog_name="routewatch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return ExitCode.bad_input
    except click.ClickException as exc:
        exc.show()
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
        return 130
    except Exception:
        click.echo("internal error (a bug in routewatch; please report it):", err=True)
        click.echo(traceback.format_exc(), err=True)
        return ExitCode.failure
    return int(result) if isinstance(result, int) else ExitCode.ok


from routewatch.cli import (  # noqa: E402
    db,
    demo,
    judge,
    pending,
    policy,
    project,
    report,
    runs,
    serve,
    sim,
    status,
)

cli.add_command(project.init)
cli.add_command(project.validate)
cli.add_command(db.db)
cli.add_command(sim.sim)
cli.add_command(runs.run_command)
cli.add_command(status.status_command)
cli.add_command(demo.demo_command)
cli.add_command(policy.policy)
cli.add_command(serve.serve_command)
cli.add_command(report.report_command)
cli.add_command(judge.judge)
for command in pending.COMMANDS:
    cli.add_command(command)
