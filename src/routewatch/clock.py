"""Time as a parameter: ``SystemClock`` in production, ``FixedClock`` for ``--at`` and tests.

Pure modules take "now" as an argument; the shell asks a ``Clock``. A run has two
times: its logical time ``at`` (what day it stands for) and the wall clock that
stamps when things happened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


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


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 time; a value without an offset is taken as UTC.

    Raises:
        ValueError: not an ISO 8601 date or time.
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
