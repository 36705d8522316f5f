"""Which HTTP stack replays fast enough: wall time and client CPU per chat completion.

Starts a loopback OpenAI-compatible server in a subprocess (uvicorn + starlette, each
answer after --latency seconds), then fires --items requests at each concurrency through
  httpx          plain httpx.AsyncClient, limits sized to the concurrency
  httpx-aiohttp  httpx.AsyncClient over httpx_aiohttp.AiohttpTransport
  aiohttp        aiohttp.ClientSession, for reference
  routewatch     routewatch's OpenAIClient (the httpx_aiohttp transport, parsing, limits)
  rw+AsyncClient the same, handed an httpx.AsyncClient over that transport
  rw-stream      routewatch with `stream: true`: 20 content chunks, usage, [DONE]
and prints wall time, its ratio to the limit items * latency / concurrency, and this
process's CPU time (the server runs in its own process, so that is the client's alone).

    .venv/bin/python bench/transports.py [--items 1000] [--latency 0.1] [--concurrency 20 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from routewatch.config import Provider
from routewatch.providers.base import ChatRequest
from routewatch.providers.limits import ProviderLimits, RetryPolicy
from routewatch.providers.openai import OpenAIClient

ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "You have 30 days from delivery."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }
).encode()
STREAM = (
    "".join(
        f"data: {json.dumps(event)}\n\n"
        for event in [
            *(
                {"model": "bench-model", "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
                for i in range(20)
            ),
            {
                "model": "bench-model",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
            {
                "model": "bench-model",
                "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 20},
            },
        ]
    ).encode()
    + b"data: [DONE]\n\n"
)
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Refund window?"}]}


def serve(latency: float) -> None:
    """Run the server until stdin closes; print its URL first."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    from routewatch.sim.server import serve_in_thread

    async def completions(request: Request) -> Response:
        stream = (await request.json()).get("stream")
        await asyncio.sleep(latency)
        if stream:
            return StreamingResponse(iter([STREAM]), media_type="text/event-stream")
        return Response(ANSWER, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with serve_in_thread(app) as url:
        print(url, flush=True)
        sys.stdin.read()


def cpu_of(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fire(call: Callable[[], Awaitable[None]], items: int, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one() for _ in range(items)))


async def run_httpx(url: str, items: int, concurrency: int, transport: bool) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    kwargs: dict[str, object] = {"limits": limits, "timeout": 60}
    if transport:
        kwargs["transport"] = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(**kwargs) as client:  # type: ignore[arg-type]

        async def call() -> None:
            response = await client.post(url, json=BODY)
            assert response.json()["choices"][0]["message"]["content"]

        await fire(call, 10, concurrency)  # warm up: open connections
        await measured(fire(call, items, concurrency))


async def run_aiohttp(url: str, items: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> None:
            async with session.post(url, json=BODY) as response:
                assert (await response.json())["choices"][0]["message"]["content"]

        await fire(call, 10, concurrency)
        await measured(fire(call, items, concurrency))


async def run_routewatch(
    base_url: str, items: int, concurrency: int, *, wrapped: bool = False, stream: bool = False
) -> None:
    provider = Provider(base_url=base_url, max_concurrency=concurrency, requests_per_minute=None)
    limits = ProviderLimits(concurrency, None)
    request = ChatRequest(model=BODY["model"], messages=BODY["messages"], stream=stream)  # type: ignore[arg-type]
    http_client = None
    if wrapped:
        pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http_client = httpx.AsyncClient(transport=AiohttpTransport(limits=pool), timeout=60)
    async with OpenAIClient(
        "bench",
        provider,
        {},
        limits=limits,
        retry=RetryPolicy(max_retries=0),
        http_client=http_client,
    ) as client:

        async def call() -> None:
            result = await client.complete(request)
            assert result.ok, result.error_message

        await fire(call, 10, concurrency)
        await measured(fire(call, items, concurrency))
    if http_client is not None:
        await http_client.aclose()


_LAST: dict[str, float] = {}


async def measured(work: Awaitable[None]) -> None:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    await work
    _LAST["wall"] = time.perf_counter() - wall
    _LAST["cpu"] = time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--only", nargs="+", help="run only these stacks")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    base_url = server.stdout.readline().strip() + "/v1"
    url = base_url + "/chat/completions"
    stacks: dict[str, Callable[[int], Coroutine[Any, Any, None]]] = {
        "httpx": lambda c: run_httpx(url, args.items, c, transport=False),
        "httpx-aiohttp": lambda c: run_httpx(url, args.items, c, transport=True),
        "aiohttp": lambda c: run_aiohttp(url, args.items, c),
        "routewatch": lambda c: run_routewatch(base_url, args.items, c),
        "rw+AsyncClient": lambda c: run_routewatch(base_url, args.items, c, wrapped=True),
        "rw-stream": lambda c: run_routewatch(base_url, args.items, c, stream=True),
    }
    print(
        f"{args.items} requests, {args.latency * 1000:g} ms server latency; server in a "
        f"subprocess, so CPU is this client process's alone (server CPU shown apart)"
    )
    print(
        f"{'stack':<14} {'conc':>4} {'wall s':>7} {'limit s':>7} {'ratio':>6} "
        f"{'cpu s':>6} {'cpu ms/req':>10} {'server cpu s':>12}"
    )
    try:
        for concurrency in args.concurrency:
            limit = args.items * args.latency / concurrency
            for name, run in stacks.items():
                if args.only and name not in args.only:
                    continue
                server_cpu = cpu_of(server.pid)
                asyncio.run(run(concurrency))
                server_cpu = cpu_of(server.pid) - server_cpu
                wall, cpu = _LAST["wall"], _LAST["cpu"]
                print(
                    f"{name:<14} {concurrency:>4} {wall:>7.2f} {limit:>7.2f} {wall / limit:>6.2f} "
                    f"{cpu:>6.2f} {cpu * 1000 / args.items:>10.2f} {server_cpu:>12.2f}",
                    flush=True,
                )
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the client process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
