"""Scripted OpenAI-compatible servers on loopback sockets, and clients pointed at them.

``FakeProvider`` answers each request with the next scripted reply (the last repeats)
and records what arrived and when. ``raw_server`` is a bare TCP server for faults an
ASGI app cannot make: resets and bodies cut off mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from routewatch.config import Provider
from routewatch.providers.limits import ProviderLimits, RetryPolicy
from routewatch.providers.openai import OpenAIClient

Reply = Callable[[], Awaitable[Response]]


def completion(
    content: str | None = "Thirty days.",
    *,
    model: str = "served-model",
    finish_reason: str | None = "stop",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage or {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def reply_json(
    doc: object = None, *, status: int = 200, headers: dict[str, str] | None = None
) -> Reply:
    body = json.dumps(completion() if doc is None else doc).encode()

    async def reply() -> Response:
        return Response(body, status, headers, media_type="application/json")

    return reply


def reply_text(text: str, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    async def reply() -> Response:
        return Response(text, status, headers, media_type="text/plain")

    return reply


def delayed(seconds: float, then: Reply) -> Reply:
    async def reply() -> Response:
        await asyncio.sleep(seconds)
        return await then()

    return reply


def chunk(
    content: str | None = None, *, finish_reason: str | None = None, model: str = "served-model"
) -> str:
    """One ``chat.completion.chunk`` as JSON."""
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return json.dumps({"object": "chat.completion.chunk", "model": model, "choices": [choice]})


USAGE_CHUNK = json.dumps(
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
)


def reply_sse(*pieces: str | bytes | float) -> Reply:
    """Stream ``pieces`` as they are: str as ``data:`` events, bytes raw, floats as pauses."""

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            if isinstance(piece, float):
                await asyncio.sleep(piece)
            elif isinstance(piece, bytes):
                yield piece
            else:
                yield f"data: {piece}\n\n".encode()

    async def reply() -> Response:
        return StreamingResponse(body(), media_type="text/event-stream")

    return reply


@dataclass
class Seen:
    """A request as the server saw it."""

    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    port: int
    """The client's port: one per connection."""
    query: str = ""
    """The request URL's query string."""


class FakeProvider:
    """A scripted ``/v1/chat/completions``: request n gets reply n, the last one repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = replies or (reply_json(),)
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        port = request.client.port if request.client else 0
        body = await request.json()
        self.seen.append(
            Seen(time.monotonic(), dict(request.headers), body, port, request.url.query)
        )
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await reply()
        finally:
            self.in_flight -= 1

    def gaps(self) -> list[float]:
        """Seconds between consecutive arrivals."""
        return [b.at - a.at for a, b in zip(self.seen, self.seen[1:], strict=False)]


def client_for(
    base_url: str,
    *,
    env: dict[str, str] | None = None,
    max_retries: int = 2,
    limits: ProviderLimits | None = None,
    **fields: Any,
) -> OpenAIClient:
    """A client with zero-jitter retries, so tests wait only for what servers ask."""
    provider = Provider(base_url=base_url, requests_per_minute=None, **fields)
    retry = RetryPolicy(max_retries=max_retries, base_s=0.0)
    return OpenAIClient("test", provider, env or {}, limits=limits, retry=retry)


def read_request(sock: socket.socket) -> bytes:
    """Read one HTTP request (headers and a Content-Length body) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += sock.recv(65536)
    return head


@contextmanager
def raw_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A bare TCP server calling ``handle`` per connection; yields its base URL."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handle(self.request)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A base URL on which nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
