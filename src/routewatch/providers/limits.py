"""How hard one provider may be pushed: requests in flight, request starts, retry waits.

One ``ProviderLimits`` per provider is shared by every route and judge on it
(``ProviderPool`` sees to that). ``RetryPolicy`` says how long a failed attempt waits;
the client waits outside its slot, so a retry that is waiting holds no slot.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType


class ProviderLimits:
    """Bounds one provider's requests in flight and paces their starts to its RPM.

    ``async with limits:`` waits for one of ``max_concurrency`` slots, then for the
    request's turn to start, and holds the slot until the block exits.

    Pacing is GCRA, the generic cell rate algorithm: a token bucket kept as one
    timestamp. Starts are spaced ``60 / requests_per_minute`` seconds apart, and after
    a quiet spell up to ``burst`` may start at once, so any window of ``w`` seconds
    holds at most ``burst + w * requests_per_minute / 60`` starts. Turns are handed
    out in arrival order, when a request asks, so waiters never stampede.

    Args:
        max_concurrency: Requests in flight at once.
        requests_per_minute: Request starts per minute; None for no pacing.
        burst: Starts allowed at once after a quiet spell; by default one second's
            worth of the rate, between 1 and 10.
    """

    __slots__ = (
        "_interval",
        "_slots",
        "_tat",
        "_tolerance",
        "max_concurrency",
        "requests_per_minute",
    )

    def __init__(
        self, max_concurrency: int, requests_per_minute: int | None, *, burst: int | None = None
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if requests_per_minute is not None and requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be at least 1, not {requests_per_minute}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        self._slots = asyncio.Semaphore(max_concurrency)
        self._interval = 0.0
        self._tolerance = 0.0
        if requests_per_minute is not None:
            self._interval = 60.0 / requests_per_minute
            if burst is None:
                burst = max(1, min(10, requests_per_minute // 60))
            self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf
        """Theoretical arrival time: when the next start is due if none may burst."""

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        if not self._interval:
            return
        try:
            now = time.monotonic()
            due = max(self._tat, now)
            self._tat = due + self._interval
            wait = due - self._tolerance - now
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:
            self._slots.release()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many times a call is retried, and how long each retry waits.

    The wait is "full jitter" exponential backoff: uniform between 0 and
    ``min(cap_s, base_s * 2 ** (attempt - 1))``, which spreads the retries of many
    failed calls instead of bunching them. A server's ``Retry-After`` is a floor.
    """

    max_retries: int
    """Retries after the first attempt."""
    base_s: float = 0.5
    """Ceiling of the first retry's random wait; doubles with each attempt. 0: no jitter."""
    cap_s: float = 30.0
    """Largest backoff ceiling, in seconds."""
    retry_after_cap_s: float = 120.0
    """A ``Retry-After`` longer than this is shortened to it."""
    deadline_s: float | None = None
    """No retry starts later than this many seconds after the call began; None: no limit."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    """Source of the jitter; pass a seeded one for repeatable waits."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: The attempt that just failed; 1 for the first.
            retry_after: The server's ``Retry-After``, in seconds, if it sent one.
        """
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 64))
        wait = self.rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_cap_s))
        return wait

    def wait(self, attempt: int, retry_after: float | None, elapsed: float) -> float | None:
        """Seconds to wait before retrying, or None when the call should give up now.

        Args:
            attempt: The attempt that just failed; 1 for the first.
            retry_after: The server's ``Retry-After``, in seconds, if it sent one.
            elapsed: Seconds since the call began.
        """
        if attempt > self.max_retries:
            return None
        wait = self.delay(attempt, retry_after)
        if self.deadline_s is not None and elapsed + wait >= self.deadline_s:
            return None
        return wait


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait, or None if it says nothing usable.

    Args:
        value: The header: delta-seconds (``"2"``, also ``"1.5"``) or an HTTP-date.
        now: The moment to count an HTTP-date from; the current time by default.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)
