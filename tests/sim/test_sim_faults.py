"""Each fault as a client sees it over real HTTP, with plain httpx and httpx over aiohttp."""

import asyncio
import errno
import json
import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

Chat = Callable[..., httpx.Response]


def test_rate_limited_is_429_with_retry_after(chat: Chat) -> None:
    response = chat("rate-limited")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "0.25"
    assert response.headers["retry-after-ms"] == "250"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_server_error_is_500_with_an_openai_error(chat: Chat) -> None:
    response = chat("failing")

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def test_bad_json_is_a_200_html_gateway_page(chat: Chat) -> None:
    response = chat("html")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_answer_is_a_200_with_half_a_json_body(chat: Chat) -> None:
    response = chat("truncating")

    assert response.status_code == 200
    assert response.text.startswith('{"id": "chatcmpl-')
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_stream_ends_without_finish_reason_or_done(sim_url: str) -> None:
    body = {"model": "truncating", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    with httpx.stream("POST", f"{sim_url}/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]

    assert response.status_code == 200
    assert lines
    assert "data: [DONE]" not in lines
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_hang_outlasts_a_short_client_timeout(chat: Chat) -> None:
    start = time.monotonic()

    with pytest.raises(httpx.TimeoutException):
        chat("hanging", timeout=0.2)

    assert time.monotonic() - start < 0.9


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs while the test runs (its loggers do not reach the root logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_reset_is_a_connection_error_for_httpx(
    sim_url: str, server_log: list[logging.LogRecord]
) -> None:
    body = {"model": "resetting", "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(httpx.TransportError) as raised:
        httpx.post(f"{sim_url}/v1/chat/completions", json=body)

    assert "reset" in str(raised.value).lower()
    assert server_log == []


def test_reset_is_a_connection_error_for_httpx_over_aiohttp(sim_url: str) -> None:
    """httpx-aiohttp maps aiohttp's ClientOSError to httpx.ConnectTimeout; the cause tells."""
    body = {"model": "resetting", "messages": [{"role": "user", "content": "hi"}]}

    async def call() -> None:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            await client.post(f"{sim_url}/v1/chat/completions", json=body)

    with pytest.raises(httpx.TransportError) as raised:
        asyncio.run(call())

    cause = raised.value.__cause__
    assert isinstance(cause, OSError)
    assert cause.errno == errno.ECONNRESET


def test_a_reset_leaves_the_next_request_on_a_pooled_client_working(
    sim_url: str, client: httpx.Client
) -> None:
    body = {"model": "resetting", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.TransportError):
        client.post(f"{sim_url}/v1/chat/completions", json=body)

    response = client.post(f"{sim_url}/v1/chat/completions", json={**body, "model": "perfect"})

    assert response.status_code == 200
