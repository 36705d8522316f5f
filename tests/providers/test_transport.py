"""The buffered transport: its pre-read responses behave as httpx's own, compressed or not."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import httpx
import pytest
from provider_fakes import FakeProvider, client_for, completion
from starlette.responses import Response

from routewatch.providers.base import ChatRequest
from routewatch.providers.transport import buffered_response

pytestmark = pytest.mark.anyio

Serve = Callable[[FakeProvider], str]

BODY = json.dumps(completion("Thirty days, ünïcode.")).encode()
RAW_HEADERS = [
    (b"Content-Type", b"application/json; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
    (b"x-litellm-model-id", b"abc"),
]
REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", content=b"{}")


@pytest.mark.parametrize("body", [BODY, b"", b"not json at all \xff"])
async def test_buffered_response_reads_as_a_response_built_from_content(body: bytes) -> None:
    fast = buffered_response(200, RAW_HEADERS, body, REQUEST)
    slow = httpx.Response(200, headers=RAW_HEADERS, content=body, request=REQUEST)

    assert fast.content == slow.content == body
    assert fast.text == slow.text
    assert fast.headers.raw == slow.headers.raw
    assert fast.headers.get("content-type") == "application/json; charset=utf-8"
    assert (fast.status_code, fast.request) == (200, REQUEST)
    assert await fast.aread() == body
    assert b"".join([chunk async for chunk in fast.aiter_bytes()]) == body
    await fast.aclose()
    assert fast.is_closed
    if body == BODY:
        assert fast.json() == slow.json()


async def test_compressed_body_is_decoded() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]

    response = buffered_response(200, headers, gzip.compress(BODY), REQUEST)

    assert response.content == BODY


async def test_client_decodes_a_gzipped_answer_over_loopback(serve: Serve) -> None:
    async def gzipped() -> Response:
        return Response(
            gzip.compress(BODY),
            headers={"content-encoding": "gzip"},
            media_type="application/json",
        )

    fake = FakeProvider(gzipped)
    url = serve(fake)

    async with client_for(url) as client:
        result = await client.complete(
            ChatRequest(model="served-model", messages=[{"role": "user", "content": "Refund?"}])
        )

    assert result.ok, result.error_message
    assert result.output == "Thirty days, ünïcode."
    assert "gzip" in fake.seen[0].headers.get("accept-encoding", "")
