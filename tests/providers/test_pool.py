"""ProviderPool: one client per provider, shared limits, closed together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from provider_fakes import FakeProvider, delayed, reply_json

from routewatch.config import Provider
from routewatch.providers.base import ChatRequest
from routewatch.providers.pool import ProviderPool

pytestmark = pytest.mark.anyio

Serve = Callable[[FakeProvider], str]


def providers(url: str = "http://127.0.0.1:9/v1") -> dict[str, Provider]:
    return {
        "gateway": Provider(base_url=url, max_concurrency=2, requests_per_minute=None),
        "backup": Provider(base_url=url),
    }


async def test_a_provider_has_one_client() -> None:
    async with ProviderPool(providers(), {}) as pool:
        first, again, other = pool.client("gateway"), pool.client("gateway"), pool.client("backup")

    assert first is again
    assert other is not first


async def test_unknown_provider_names_the_known_ones() -> None:
    async with ProviderPool(providers(), {}) as pool:
        with pytest.raises(KeyError, match="backup, gateway"):
            pool.client("nope")


async def test_closed_pool_hands_out_no_clients() -> None:
    pool = ProviderPool(providers(), {})
    pool.client("gateway")
    await pool.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        pool.client("gateway")


async def test_routes_and_judges_on_a_provider_share_its_concurrency(serve: Serve) -> None:
    fake = FakeProvider(delayed(0.05, reply_json()))
    route = ChatRequest(model="route-model", messages=[])
    judge = ChatRequest(model="judge-model", messages=[])

    async with ProviderPool(providers(serve(fake)), {}) as pool:
        calls = [pool.client("gateway").complete(r) for r in (route, judge) * 4]
        results = await asyncio.gather(*calls)

    assert all(result.ok for result in results)
    assert fake.max_in_flight == 2


def test_tls_is_verified_for_https_endpoints_and_through_proxies() -> None:
    import ssl

    from routewatch.config import Provider
    from routewatch.providers.openai import OpenAIClient

    def mode(url: str, env: dict[str, str]) -> ssl.VerifyMode:
        client = OpenAIClient("p", Provider(base_url=url), env)
        assert client._transport is not None
        return client._transport.ssl_context.verify_mode

    assert mode("https://gw.example/v1", {}) == ssl.CERT_REQUIRED
    assert mode("http://gw.internal/v1", {"HTTP_PROXY": "https://proxy:3128"}) == ssl.CERT_REQUIRED
    assert mode("http://127.0.0.1:8788/v1", {}) == ssl.CERT_NONE
