"""The OpenAI-compatible chat client: ``POST {base_url}/chat/completions``, plain or streamed.

``OpenAIClient.complete`` sends one ``ChatRequest`` under its provider's limits, retries
429, 5xx, timeouts, connection faults and malformed answers, and returns a ``CallResult``;
it never raises for a provider fault. Requests go over aiohttp's connection pool through
``httpx_aiohttp``'s transport, since plain httpx used 11 ms of CPU per call at 100 in
flight (``bench/transports.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from routewatch import __version__
from routewatch.config import Provider, secret
from routewatch.providers.answers import Answer, Failure, read_response, transport_failure
from routewatch.providers.base import CallResult, ChatRequest, ErrorClass
from routewatch.providers.limits import ProviderLimits, RetryPolicy
from routewatch.providers.transport import BUFFERED, BufferedAiohttpTransport

_SET_BY_CLIENT = frozenset({"host", "content-length", "transfer-encoding"})
"""Headers the client sets from the URL and body; a route's own value would contradict them."""


class OpenAIClient:
    """Calls one OpenAI-compatible provider; shared by every route and judge on it.

    Args:
        name: The provider's name in ``routewatch.yaml``, used in messages.
        provider: Its configuration.
        env: Where ``provider.api_key_env`` is read, once per call.
        limits: Shared concurrency and rate limits; by default the provider's own.
        retry: Retry policy; by default ``provider.max_retries`` with jittered backoff.
        http_client: An httpx client to send through and leave open (its headers and
            auth apply; ``provider.timeout_s`` is the deadline). By default requests go
            straight to an ``httpx_aiohttp`` transport with a connection per slot,
            closed by ``aclose``.
    """

    def __init__(
        self,
        name: str,
        provider: Provider,
        env: Mapping[str, str],
        *,
        limits: ProviderLimits | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        if limits is None:
            limits = ProviderLimits(provider.max_concurrency, provider.requests_per_minute)
        self.limits = limits
        self.retry = retry if retry is not None else RetryPolicy(max_retries=provider.max_retries)
        self._env = env
        base = httpx.URL(provider.base_url)
        # The path is appended to, so a query (Azure's `?api-version=`) stays a query.
        self._url = base.copy_with(path=base.path.rstrip("/") + "/chat/completions")
        self._host = self._url.netloc
        self._headers = {
            "content-type": "application/json",
            "user-agent": f"routewatch/{__version__}",
        }
        self._transport: AiohttpTransport | None = None
        self._roundtrip: Callable[[httpx.Request], Awaitable[httpx.Response]]
        if http_client is None:
            # The transport alone, without httpx.AsyncClient around it: the client's
            # cookie jar, auth and redirect steps would add a quarter to the CPU per call.
            size = max(provider.max_concurrency, self.limits.max_concurrency)
            proxy = _env_proxy(self._url, env)
            self._transport = BufferedAiohttpTransport(
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                proxy=proxy,
                # Loading the CA bundle takes tens of milliseconds before the first
                # call; plain-http endpoints (a local gateway, the simulator) never use it.
                verify=self._url.scheme == "https" or proxy is not None,
            )
            self._roundtrip = self._transport.handle_async_request
        else:
            client, timeout = http_client, provider.timeout_s

            async def roundtrip(request: httpx.Request) -> httpx.Response:
                built = client.build_request(
                    "POST",
                    request.url,
                    headers=request.headers,
                    content=request.content,
                    timeout=timeout,
                )
                return await client.send(built, stream=True)

            self._roundtrip = roundtrip

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections, unless they belong to an ``http_client`` passed in."""
        if self._transport is not None:
            await self._transport.aclose()

    async def complete(self, request: ChatRequest) -> CallResult:
        """Ask for one chat completion, retrying what may pass.

        Raises:
            MissingSecretError: ``provider.api_key_env`` is set but the variable is not.
        """
        key = None
        if self.provider.api_key_env:
            key = secret(self.provider.api_key_env, self._env, needed_for=f"provider {self.name}")
        http_request: httpx.Request | None = None
        attempt = 0
        called = time.perf_counter()
        while True:
            attempt += 1
            async with self.limits:
                if http_request is None:
                    # Built once a slot is free: a replay queues hundreds of calls at
                    # once, and requests built while they wait delay the first ones sent.
                    http_request = self._encode(request, key)
                started = time.perf_counter()
                result = await self._attempt(http_request, request.stream, started)
                latency_ms = (time.perf_counter() - started) * 1000.0
            if isinstance(result, Answer):
                return CallResult(
                    output=result.output,
                    finish_reason=result.finish_reason,
                    tokens_in=result.tokens_in,
                    tokens_out=result.tokens_out,
                    latency_ms=latency_ms,
                    ttft_ms=result.ttft_ms,
                    attempts=attempt,
                    status=result.status,
                    served_model=result.served_model,
                    response_meta=result.meta,
                    logprobs=result.logprobs,
                )
            if result.error_class is not ErrorClass.client_error:
                wait = self.retry.wait(attempt, result.retry_after, time.perf_counter() - called)
                if wait is not None:
                    await asyncio.sleep(wait)  # outside the slot: a waiting retry holds none
                    continue
            return CallResult(
                output=None,
                finish_reason=None,
                tokens_in=None,
                tokens_out=None,
                latency_ms=latency_ms,
                ttft_ms=None,
                attempts=attempt,
                error_class=result.error_class,
                error_message=result.message(key),
                status=result.status,
                served_model=result.served_model,
                response_meta=result.meta or {},
            )

    def _encode(self, request: ChatRequest, key: str | None) -> httpx.Request:
        """The HTTP request for ``request``, with ``key`` as its bearer token if any."""
        headers = self._headers | {name.lower(): value for name, value in request.headers.items()}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            **request.params,
            "stream": request.stream,
        }
        if request.stream:
            options = request.params.get("stream_options")
            payload["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return self._http_request(
            headers, json.dumps(payload).encode(), buffered=not request.stream
        )

    def _http_request(
        self, headers: Mapping[str, str], body: bytes, *, buffered: bool
    ) -> httpx.Request:
        """A POST of ``body`` to the completions URL, its ``Host`` and ``Content-Length`` set.

        Built from a ready stream and header pairs, as httpx itself copies a request:
        ``Request(content=..., headers=dict)`` normalises every header twice, 33 µs per
        call against 6 µs this way on the development machine.

        Raises:
            UnicodeEncodeError: a header value is not ASCII (httpx refuses those too).
        """
        pairs = [(b"Host", self._host), (b"Content-Length", str(len(body)).encode())]
        pairs += [
            (name.encode("ascii"), value.encode("ascii"))
            for name, value in headers.items()
            if name not in _SET_BY_CLIENT
        ]
        request = httpx.Request(
            "POST",
            self._url,
            headers=pairs,
            stream=httpx.ByteStream(body),
            extensions={BUFFERED: buffered},
        )
        request.read()  # makes .content available, as Request(content=...) does
        return request

    async def _attempt(
        self, request: httpx.Request, stream: bool, started: float
    ) -> Answer | Failure:
        """One exchange under the attempt deadline, its faults classified."""
        try:
            async with asyncio.timeout(self.provider.timeout_s):
                response = await self._roundtrip(request)
                try:
                    return await read_response(response, stream=stream, started=started)
                finally:
                    await response.aclose()
        except TimeoutError:
            return Failure(
                error_class=ErrorClass.timeout,
                reason=f"no complete answer within {self.provider.timeout_s:g} s",
            )
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            return transport_failure(exc)
        except httpx.DecodingError as exc:
            return Failure(
                error_class=ErrorClass.bad_response, reason="undecodable body", detail=str(exc)
            )


def _env_proxy(url: httpx.URL, env: Mapping[str, str]) -> httpx.Proxy | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name, unless ``NO_PROXY`` skips it.

    httpx.AsyncClient would honour these; the bare transport does not, so this does.
    ``NO_PROXY`` entries are host names or domain suffixes (``*``: every host).
    """
    found = {name.lower(): value for name, value in env.items() if value}
    chosen = found.get(f"{url.scheme}_proxy") or found.get("all_proxy")
    if not chosen:
        return None
    for entry in found.get("no_proxy", "").lower().split(","):
        entry = entry.strip().lstrip(".")
        if entry == "*" or (entry and (url.host == entry or url.host.endswith("." + entry))):
            return None
    return httpx.Proxy(chosen)
