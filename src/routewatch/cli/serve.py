"""``routewatch serve``: the daemon."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import click

from routewatch.cli.exit_codes import ExitCode
from routewatch.cli.options import config_option
from routewatch.errors import InputError, RoutewatchError, UsageError

log = logging.getLogger("routewatch.daemon")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        moment = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


@click.command("serve")
@config_option
@click.option("--host", help="Address to listen on; default: server.host (127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port; default: server.port.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, for log collectors.",
)
def serve_command(config_path: Path, host: str | None, port: int | None, log_format: str) -> None:
    """Run the daemon: scheduled runs, alert delivery and the HTTP server, until SIGTERM.

    SIGHUP re-reads the config. Several replicas may share one PostgreSQL database:
    one runs the schedules, each slot runs once, every event is delivered once.
    """
    from routewatch.daemon.service import Daemon

    _configure_logging(log_format)
    try:
        daemon = Daemon(config_path, dict(os.environ), host=host, port=port)
        asyncio.run(daemon.run())
    except RoutewatchError as exc:
        if log_format != "json":
            raise  # the command line prints it, as for every command
        # A log collector reads every line as JSON, a failed start's too.
        lines = [str(exc)]
        if isinstance(exc, InputError) and not isinstance(exc, UsageError):
            lines = [str(p) for p in exc.problems]
        for line in lines:
            log.error("%s", line)
        code = ExitCode.bad_input if isinstance(exc, InputError) else ExitCode.failure
        raise click.exceptions.Exit(code) from None


def _configure_logging(log_format: str) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)
    # The daemon logs one line per run; library chatter stays at warnings.
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.error", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
