"""What the HTTP surface needs from the running daemon, and nothing more.

The server (``daemon.server``) is built on a ``DaemonState``; the daemon
(``daemon.service``) fills it in, and tests can build one around a real database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from routewatch.config import Config


@dataclass(slots=True, kw_only=True)
class DaemonState:
    """The daemon's live parts, as the HTTP handlers see them.

    ``config`` is replaced on reload (SIGHUP); handlers read it on every request.
    """

    config: Config
    engine: Engine
    env: Mapping[str, str]
    started_at: datetime
    reports_dir: Path
    scheduler_alive: Callable[[], bool]
    """Whether the scheduler's loop is running (``/healthz``)."""
    is_leader: Callable[[], bool]
    """Whether this replica runs the schedules (the others only dispatch and serve)."""
    trigger_runs: Callable[[list[str]], Awaitable[list[str]]]
    """Start a cycle now for the named routes (all when empty), in the background; returns
    the routes accepted. Raises ``routewatch.errors.UsageError`` for an unknown route."""
    running: Callable[[], list[str]] = field(default=lambda: [])
    """Routes with a run in progress in this process."""
