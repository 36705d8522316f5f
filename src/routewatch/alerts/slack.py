"""Slack incoming webhooks: one POST of a Block Kit payload, its token never shown.

``send_slack`` posts a message built by ``slack_blocks.slack_message`` with slack-sdk's
synchronous ``WebhookClient``; the outbox calls it through ``asyncio.to_thread`` and owns the
long retries.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from slack_sdk import http_retry
from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from routewatch.alerts.webhook import printable, retry_after_s

DELIVERY_HEADER = "X-Routewatch-Delivery"
URL_PLACEHOLDER = "<slack webhook url>"

_SDK_LOGGER = logging.Logger("routewatch.alerts.slack.sdk", logging.CRITICAL + 1)
"""A silent logger for ``WebhookClient``, outside the logger tree.

slack-sdk logs the request URL (which embeds the webhook token) whenever its logger's own
level is DEBUG or unset, and some exceptions that quote it at ERROR. Failures are reported
in ``SlackResult`` instead, redacted.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackResult:
    """The outcome of one delivery to a Slack incoming webhook."""

    ok: bool
    status_code: int | None = None
    """The status of Slack's last answer; None when no answer came."""
    error: str | None = None
    """A short reason for a failure; it never contains the webhook URL."""
    retry_after_s: float | None = None
    """The wait Slack asked for on a 429 (``Retry-After``), if any."""


class _ShortRateLimitRetryHandler(http_retry.RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, but only for a short ``Retry-After``, and capped.

    The stock handler sleeps for whatever Slack asks; a long wait belongs to the outbox's
    backoff, not to a worker thread.
    """

    def __init__(self, *, max_retry_count: int, max_wait_s: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_s = max_wait_s

    def _can_retry(
        self,
        *,
        state: http_retry.RetryState,
        request: http_retry.HttpRequest,
        response: http_retry.HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        can = super()._can_retry(state=state, request=request, response=response, error=error)
        return can and _retry_after_s(response) <= self.max_wait_s

    def prepare_for_next_attempt(
        self,
        *,
        state: http_retry.RetryState,
        request: http_retry.HttpRequest,
        response: http_retry.HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        time.sleep(min(_retry_after_s(response), self.max_wait_s))
        state.increment_current_attempt()


def _retry_after_s(response: http_retry.HttpResponse | None) -> float:
    """Seconds Slack asked to wait: 1 without a header, infinite for one we cannot read."""
    headers = response.headers if response is not None else {}
    values = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not values:
        return 1.0
    try:
        return max(float(values[0]), 0.0)
    except ValueError:
        return math.inf


def _redact(text: str, url: str) -> str:
    # The path holds the token: redact it too, and each tail of it (`T0/B0/token`, the
    # token alone), in case a message quotes only part of it.
    path = url.partition("://")[2].partition("/")[2].partition("?")[0]
    parts = path.split("/")
    secrets = {url, path} | {"/".join(parts[i:]) for i in range(len(parts))}
    for secret in sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, URL_PLACEHOLDER)
    return text


def send_slack(
    url: str,
    message: Mapping[str, Any],
    *,
    timeout_s: float,
    delivery_id: str,
    retry_interval_s: float = 1.0,
    max_retry_after_s: float = 5.0,
) -> SlackResult:
    """POST a message to a Slack incoming webhook; blocks, so run it in a thread.

    The client retries once, at most: after a connection error or a 500/503 (after
    ``retry_interval_s``), or after a 429 whose ``Retry-After`` is at most
    ``max_retry_after_s``. Longer waits are left to the caller's backoff.

    Args:
        url: The webhook URL. It embeds the token, so no result or log line contains it.
        message: A payload such as ``slack_blocks.slack_message`` returns.
        timeout_s: The timeout of each HTTP attempt, rounded up to whole seconds.
        delivery_id: Sent as ``X-Routewatch-Delivery``; the same for every attempt.
        retry_interval_s: The wait before retrying a connection or server error.
        max_retry_after_s: The longest ``Retry-After`` worth waiting for in this call.

    Returns:
        ``ok`` for a 2xx answer; otherwise the status (None without an answer) and why.
    """
    interval = http_retry.FixedValueRetryIntervalCalculator(fixed_internal=retry_interval_s)
    handlers: list[http_retry.RetryHandler] = [
        http_retry.ConnectionErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        ServerErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
        _ShortRateLimitRetryHandler(max_retry_count=1, max_wait_s=max_retry_after_s),
    ]
    client = WebhookClient(
        url=url,
        timeout=max(1, math.ceil(timeout_s)),
        logger=_SDK_LOGGER,
        retry_handlers=handlers,
    )
    try:
        response = client.send_dict(dict(message), headers={DELIVERY_HEADER: delivery_id})
    except (OSError, HTTPException, SlackClientError, ValueError) as exc:
        error = printable(_redact(f"{type(exc).__name__}: {exc}", url))
        return SlackResult(ok=False, error=error[:300])
    if 200 <= response.status_code < 300:
        return SlackResult(ok=True, status_code=response.status_code)
    body = " ".join(printable(_redact(str(response.body), url)).split())[:200]
    wait = None
    if response.status_code in (429, 503):
        value = next(
            (v for k, v in (response.headers or {}).items() if k.lower() == "retry-after"), None
        )
        wait = retry_after_s(str(value) if value is not None else None)
    return SlackResult(
        ok=False,
        status_code=response.status_code,
        error=f"HTTP {response.status_code}: {body}",
        retry_after_s=wait,
    )
