"""Concurrency, request pacing and retry waits, alone and as a server sees them."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from provider_fakes import FakeProvider, client_for, delayed, reply_json, reply_text

from routewatch.providers.base import ChatRequest
from routewatch.providers.limits import ProviderLimits, RetryPolicy, parse_retry_after

Serve = Callable[[FakeProvider], str]
ASK = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


def test_backoff_stays_under_its_doubling_ceiling() -> None:
    policy = RetryPolicy(max_retries=5, base_s=0.5, cap_s=30.0, rng=random.Random(7))

    waits = [[policy.delay(attempt) for _ in range(200)] for attempt in (1, 2, 3)]

    assert all(max(w) <= top for w, top in zip(waits, (0.5, 1.0, 2.0), strict=True))
    assert max(waits[2]) > 1.0


def test_backoff_ceiling_is_capped() -> None:
    policy = RetryPolicy(max_retries=50, base_s=1.0, cap_s=3.0, rng=random.Random(1))

    assert max(policy.delay(40) for _ in range(200)) <= 3.0


def test_same_seed_gives_the_same_waits() -> None:
    first = RetryPolicy(max_retries=3, rng=random.Random(42))
    second = RetryPolicy(max_retries=3, rng=random.Random(42))

    assert [first.delay(n) for n in (1, 2, 3)] == [second.delay(n) for n in (1, 2, 3)]


def test_retry_after_is_a_floor_under_the_backoff() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.5, rng=random.Random(3))

    assert min(policy.delay(1, retry_after=4.0) for _ in range(50)) == 4.0


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_retries=3, base_s=0.0, retry_after_cap_s=120.0)

    assert policy.delay(1, retry_after=86_400.0) == 120.0


def test_wait_gives_up_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2, base_s=0.0)

    assert [policy.wait(n, None, elapsed=0.0) for n in (1, 2, 3)] == [0.0, 0.0, None]


def test_wait_gives_up_when_the_wait_would_pass_the_deadline() -> None:
    policy = RetryPolicy(max_retries=5, base_s=0.0, deadline_s=10.0)

    assert policy.wait(1, retry_after=3.0, elapsed=2.0) == 3.0
    assert policy.wait(1, retry_after=3.0, elapsed=8.0) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Sun, 01 Mar 2026 06:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 05:59:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(
    value: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)

    assert parse_retry_after(value, now=now) == seconds


@pytest.mark.anyio
async def test_limits_bound_requests_in_flight() -> None:
    limits = ProviderLimits(3, None)
    in_flight, peak = 0, 0

    async def work() -> None:
        nonlocal in_flight, peak
        async with limits:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(work() for _ in range(12)))

    assert peak == 3


@pytest.mark.anyio
async def test_pacing_spaces_starts_after_the_burst() -> None:
    limits = ProviderLimits(100, 3000, burst=5)  # one start every 20 ms
    starts: list[float] = []

    async def work() -> None:
        async with limits:
            starts.append(time.monotonic())

    await asyncio.gather(*(work() for _ in range(15)))

    assert starts[4] - starts[0] < 0.015
    assert 0.19 <= starts[-1] - starts[0] < 0.5


@pytest.mark.anyio
async def test_max_concurrency_bounds_requests_at_the_server(serve: Serve) -> None:
    fake = FakeProvider(delayed(0.05, reply_json()))

    async with client_for(serve(fake), max_concurrency=3) as client:
        results = await asyncio.gather(*(client.complete(ASK) for _ in range(12)))

    assert all(result.ok for result in results)
    assert fake.max_in_flight == 3


@pytest.mark.anyio
async def test_rpm_paces_request_starts_at_the_server(serve: Serve) -> None:
    fake = FakeProvider()
    limits = ProviderLimits(16, 2400, burst=1)  # one start every 25 ms

    async with client_for(serve(fake), limits=limits) as client:
        await asyncio.gather(*(client.complete(ASK) for _ in range(20)))

    span = fake.seen[-1].at - fake.seen[0].at
    assert 0.45 <= span < 0.9


@pytest.mark.anyio
async def test_a_retry_waiting_holds_no_slot(serve: Serve) -> None:
    """With one slot, a second call is served while the first waits out its Retry-After."""
    fake = FakeProvider(
        reply_text("slow down", status=429, headers={"retry-after": "0.4"}), reply_json()
    )

    async with client_for(serve(fake), max_concurrency=1, max_retries=1) as client:
        first = asyncio.create_task(client.complete(ChatRequest(model="first", messages=[])))
        while not fake.seen:
            await asyncio.sleep(0.005)
        second = await client.complete(ChatRequest(model="second", messages=[]))
        await first

    assert [seen.body["model"] for seen in fake.seen] == ["first", "second", "first"]
    assert second.ok
    assert fake.seen[1].at - fake.seen[0].at < 0.3
