"""Generic webhooks: the event body of DESIGN.md, signed with HMAC-SHA256.

A receiver verifies ``X-Routewatch-Signature: sha256=<hex>`` by computing the HMAC of the
raw request body with the shared secret (compare with ``hmac.compare_digest``), and drops
duplicates by ``X-Routewatch-Delivery``: a message is delivered at least once, and the same
message always carries the same delivery id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """The outcome of one delivery attempt."""

    ok: bool
    status_code: int | None = None
    error: str | None = None


def body_bytes(event: Mapping[str, Any]) -> bytes:
    """The exact bytes that are sent and signed."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of body with secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str, secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (what a receiver runs)."""
    return hmac.compare_digest(signature(body, secret), header)


def send_webhook(
    url: str,
    event: Mapping[str, Any],
    *,
    delivery_id: str,
    secret: str | None,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> SendResult:
    """POST ``event`` to ``url``; any 2xx answer is a delivery."""
    body = body_bytes(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "routewatch",
        "X-Routewatch-Event": str(event.get("event", "")),
        "X-Routewatch-Delivery": delivery_id,
    }
    if secret:
        headers["X-Routewatch-Signature"] = signature(body, secret)
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        message = redact_url(f"{type(exc).__name__}: {exc}", url)
        return SendResult(ok=False, error=message[:300])
    if 200 <= response.status_code < 300:
        return SendResult(ok=True, status_code=response.status_code)
    # The receiver may quote the request (`no such hook: /in?token=...`).
    return SendResult(
        ok=False,
        status_code=response.status_code,
        error=f"HTTP {response.status_code}: {redact_url(response.text, url)[:200]}",
    )


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
