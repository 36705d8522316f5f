"""Generic webhooks: the event body of DESIGN.md, signed with HMAC-SHA256.

A receiver verifies ``X-Routewatch-Signature: sha256=<hex>`` by computing the HMAC of the
raw request body with the shared secret (compare with ``hmac.compare_digest``), and drops
duplicates by ``X-Routewatch-Delivery``: a message is delivered at least once, and the same
message always carries the same delivery id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from routewatch.providers.limits import parse_retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of one delivery attempt."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    """The wait the receiver asked for (``Retry-After`` on a 429 or 503), if any."""


ERROR_BODY_BYTES = 4096
"""Of a failed answer's body, what is read: the error quotes its start."""


RETRY_AFTER_MAX_S = 7 * 24 * 3600.0
"""The longest ``Retry-After`` taken at its word; a longer one is cut to it."""


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (as a provider's is read), or None.

    At most ``RETRY_AFTER_MAX_S``: a receiver's ``1e12`` must not push a message past any
    date the outbox can write (the give-up time decides its fate).
    """
    seconds = parse_retry_after(value, now=now)
    return None if seconds is None else min(seconds, RETRY_AFTER_MAX_S)


def printable(text: str) -> str:
    """``text`` on one line, without control or bidi characters.

    A receiver's words reach a terminal and a log line, where an escape sequence or a
    newline would act.
    """
    return "".join(c if c.isprintable() and not _bidi(c) else " " for c in text)


def _bidi(c: str) -> bool:
    return unicodedata.category(c) == "Cf"


def body_bytes(event: Mapping[str, Any]) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body with secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (what a receiver runs).

    False, never an error, for a missing header or one that is not ASCII.
    """
    if not isinstance(header, str) or not header.isascii():
        return False
    return hmac.compare_digest(signature(body, secret), header)


def send_webhook(
    url: str,
    event: Mapping[str, Any],
    *,
    delivery_id: str,
    secret: str | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SendResult:
    """POST ``event`` to ``url``; any 2xx answer is a delivery.

    The whole attempt, from connecting to the last byte read, takes at most ``timeout_s``:
    a receiver sending its status line or body a byte at a time would otherwise hold it
    as long as it liked (httpx's timeouts bound each read, not their sum). Of a failed
    answer, only the first ``ERROR_BODY_BYTES`` are read. Blocks: it runs its own event
    loop (in a thread of its own when the caller's thread has one running).
    """
    attempt = _post(url, event, delivery_id, secret, timeout_s, transport)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(attempt)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, attempt).result()


async def _post(
    url: str,
    event: Mapping[str, Any],
    delivery_id: str,
    secret: str | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None,
) -> SendResult:
    body = body_bytes(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "routewatch",
        "X-Routewatch-Event": str(event.get("event", "")),
        "X-Routewatch-Delivery": delivery_id,
    }
    if secret:
        headers["X-Routewatch-Signature"] = signature(body, secret)
    status = 0
    answer = ""
    wait = None
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(timeout=timeout_s, transport=transport) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            if 200 <= status < 300:
                return SendResult(ok=True, status_code=status)
            if status in (429, 503):
                wait = retry_after_s(response.headers.get("retry-after"))
            start = bytearray()
            try:
                async for chunk in response.aiter_bytes():
                    start += chunk
                    if len(start) >= ERROR_BODY_BYTES:
                        break
            finally:  # what arrived before the time ran out, or the body broke off
                answer = start[:ERROR_BODY_BYTES].decode(
                    response.encoding or "utf-8", errors="replace"
                )
    except TimeoutError:
        if not status:
            return SendResult(ok=False, error=f"no answer within {timeout_s:g} s")
    except Exception as exc:  # httpx's errors, and what anyio raises (a bad port, say)
        if not status:
            top, cause = _leaf(exc), _cause(exc)
            said = (
                f"{type(top).__name__}: {cause}"
                if cause is not top
                else f"{type(top).__name__}: {top}"
            )
            return SendResult(ok=False, error=printable(redact_url(said, url))[:300])
    if 200 <= status < 300:  # the time ran out, or the socket broke, while closing
        return SendResult(ok=True, status_code=status)
    # The receiver may quote the request (`no such hook: /in?token=...`).
    return SendResult(
        ok=False,
        status_code=status,
        error=f"HTTP {status}: {printable(redact_url(answer, url))[:200]}",
        retry_after_s=wait,
    )


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside an exception group (anyio's connect raises one)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _cause(exc: BaseException) -> BaseException:
    """The deepest operating-system error behind ``exc``, else ``exc`` itself.

    httpx says "All connection attempts failed"; ``[Errno 111]`` behind it says why.
    """
    deepest = found = _leaf(exc)
    for _ in range(10):  # chains are short; a loop in one must not hang
        behind = found.__cause__ or found.__context__
        if behind is None:
            break
        found = _leaf(behind)
        if isinstance(found, OSError):
            deepest = found
    return deepest


def redact_url(text: str, url: str) -> str:
    """``text`` with ``url`` and its secret-bearing parts replaced by ``<webhook url>``.

    The URL may carry a token (``${VAR}`` expands in it) in its path, query or user
    info; a message may quote the whole URL, or only its path and query.
    """
    parts = urlsplit(url)
    path_query = parts.path + (f"?{parts.query}" if parts.query else "")
    pieces = {url, path_query, parts.path, parts.query, parts.netloc if "@" in parts.netloc else ""}
    pieces |= {value for _, value in parse_qsl(parts.query)}
    for piece in sorted((p for p in pieces if len(p) >= 8), key=len, reverse=True):
        text = text.replace(piece, "<webhook url>")
    return text
