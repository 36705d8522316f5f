"""``routewatch serve``: the daemon."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import click

from routewatch.cli.options import config_option


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
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
    daemon = Daemon(config_path, dict(os.environ), host=host, port=port)
    asyncio.run(daemon.run())


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
