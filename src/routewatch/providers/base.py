"""What a call to a route or judge is and what it returns, independent of the HTTP client.

``ChatRequest`` goes in, ``CallResult`` comes out, and a call never raises for a
provider fault: the fault is recorded as an ``ErrorClass`` so the runner stores
it beside the successful results and counts it in the error rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorClass(StrEnum):
    """Why a call finally failed; values are stored in ``results.error_class``."""

    timeout = "timeout"
    """No complete answer within the attempt's deadline."""
    rate_limited = "rate_limited"
    """HTTP 429 on every attempt."""
    server_error = "server_error"
    """HTTP 5xx on every attempt."""
    connection = "connection"
    """The connection could not be made or was reset."""
    bad_response = "bad_response"
    """Not JSON, no choices, or a stream that ended without finishing."""
    client_error = "client_error"
    """HTTP 4xx other than 429 (bad request, unauthorised): not retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One chat completion to request."""

    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any] = field(default_factory=dict)
    """Extra body fields (temperature, max_tokens, response_format, ...), sent as given."""
    stream: bool = False
    """Ask for server-sent events, which measures time to first token."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra request headers, e.g. ``X-Routewatch-At`` with the run's logical time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """What one call produced, after its retries; ``error_class`` is None on success."""

    output: str | None
    finish_reason: str | None
    tokens_in: int | None
    tokens_out: int | None
    latency_ms: float
    """The final attempt's own time, from sending the request to the end of the answer.

    Retries, their waits and queueing for a slot are left out, so that latency compares
    routes rather than our own backoff; ``attempts`` shows that retries happened.
    """
    ttft_ms: float | None
    """Time to the first content token of the final attempt (streamed calls only)."""
    attempts: int
    error_class: ErrorClass | None = None
    error_message: str | None = None
    status: int | None = None
    """HTTP status of the final attempt, if one arrived."""
    served_model: str | None = None
    """The ``model`` the response body names: who actually answered."""
    response_meta: dict[str, str] = field(default_factory=dict)
    """Gateway headers worth keeping (``x-litellm-*``, ``x-openrouter-*``, request ids)."""
    logprobs: Any = None
    """``choices[0].logprobs`` as the provider sent it, unchecked (asked for with
    ``params: {logprobs: true}``; plain JSON bodies only). The judge reads it."""

    @property
    def ok(self) -> bool:
        """True when the call produced an answer."""
        return self.error_class is None
