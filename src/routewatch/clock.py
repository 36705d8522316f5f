"""Time as a parameter: ``SystemClock`` in production, ``FixedClock`` for ``--at`` and tests.

Pure modules take "now" as an argument; the shell asks a ``Clock``. A run has two
times: its logical time ``at`` (what day it stands for) and the wall clock that
stamps when things happened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Something that tells the current time, always timezone-aware UTC."""

    def now(self) -> datetime:
        """The current time."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that says what it is told; ``advance`` moves it."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        """The fixed time."""
        return self._at

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._at += delta


def parse_instant(text: str, timezone: str = "UTC") -> datetime:
    """Parse an ISO 8601 time, returned in UTC.

    A value without an offset is a wall-clock time in ``timezone`` (an IANA name),
    the zone the config's cron schedules use, so ``--at 2026-11-20T06:00`` names
    the same slot as ``schedule: "0 6 * * *"``.

    Raises:
        ValueError: not an ISO 8601 date or time.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone))
    return value.astimezone(UTC)
