"""Reading a chat completion: a JSON body or a server-sent event stream -> answer or fault.

The client in ``openai.py`` hands each HTTP response here and gets back an ``Answer`` or
a ``Failure`` that carries its ``ErrorClass``, what the server said and any
``Retry-After``. Nothing here raises for what a server sends. Plain dict access with
careful checks, not pydantic: this runs once per call and per streamed chunk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import aiohttp
import httpx

from routewatch.providers.base import ErrorClass
from routewatch.providers.limits import parse_retry_after

META_PREFIXES = ("x-litellm-", "x-openrouter-", "llm_provider-")
"""Response headers kept in ``CallResult.response_meta``: who served the call, fallbacks."""
META_NAMES = frozenset({"x-request-id", "openai-processing-ms"})
_META_PREFIXES = tuple(prefix.encode() for prefix in META_PREFIXES)
_META_NAMES = frozenset(name.encode() for name in META_NAMES)
SNIPPET_CHARS = 200
"""Bodies and header values are cut to this many characters before they are stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """An attempt that produced an answer; ``CallResult`` fields, less the call's own."""

    output: str
    finish_reason: str | None
    tokens_in: int | None
    tokens_out: int | None
    ttft_ms: float | None
    status: int
    served_model: str | None
    meta: dict[str, str]
    logprobs: object = None
    """``choices[0].logprobs`` of a JSON body, unchecked: only a judge asks for it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """An attempt that failed, and what its response said about trying again."""

    error_class: ErrorClass
    reason: str
    detail: bytes | str | None = None
    """What the server said, cleaned of the API key and shortened only in ``message``."""
    status: int | None = None
    retry_after: float | None = None
    served_model: str | None = None
    meta: dict[str, str] | None = None

    def message(self, key: str | None) -> str:
        """A short message for ``CallResult.error_message``, with ``key`` blanked out."""
        if not self.detail:
            return self.reason
        detail = self.detail
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        if key:
            detail = detail.replace(key, "[api key]")
        detail = " ".join(detail.split())
        if len(detail) > SNIPPET_CHARS:
            detail = detail[:SNIPPET_CHARS] + "..."
        return f"{self.reason}: {detail}"


async def read_response(
    response: httpx.Response, *, stream: bool, started: float
) -> Answer | Failure:
    """Read ``response`` to its end and say what it amounts to.

    Args:
        response: An unread response to a chat completion request.
        stream: Whether server-sent events were asked for.
        started: ``time.perf_counter()`` when the request was sent, for time to first token.
    """
    status = response.status_code
    meta = _meta(response.headers)
    if not 200 <= status < 300:
        await response.aread()
        return _status_failure(response, meta)
    if not stream or response.headers.get("content-type", "").startswith("application/json"):
        # Some servers ignore `stream` and answer with one JSON body.
        return _parse_completion(await response.aread(), status, meta)
    answer = _StreamState(started)
    decoder = _SSEDecoder()
    try:
        async for chunk in response.aiter_bytes():
            failure = answer.feed(decoder.feed(chunk))
            if failure is not None:
                return replace(failure, status=status, meta=meta)
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        # After a 200 the fault is the stream's, not the connection's: a truncated stream.
        cut = transport_failure(exc)
        return replace(
            cut,
            error_class=ErrorClass.bad_response,
            reason=f"stream cut off ({cut.reason})",
            status=status,
            served_model=answer.model,
            meta=meta,
        )
    failure = answer.feed(decoder.close())
    if failure is not None:
        return replace(failure, status=status, meta=meta)
    return answer.finish(status, meta)


class _Usage(NamedTuple):
    tokens_in: int | None
    tokens_out: int | None


def _usage(usage: object) -> _Usage:
    if not isinstance(usage, dict):
        return _Usage(None, None)
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return _Usage(
        prompt if type(prompt) is int else None,
        completion if type(completion) is int else None,
    )


def _meta(headers: httpx.Headers) -> dict[str, str]:
    meta: dict[str, str] = {}
    for raw_name, raw_value in headers.raw:
        name = raw_name.lower()
        if name in _META_NAMES or name.startswith(_META_PREFIXES):
            key = name.decode("latin-1")
            value = raw_value.decode("latin-1")
            meta[key] = (f"{meta[key]}, {value}" if key in meta else value)[:SNIPPET_CHARS]
    return meta


def _status_failure(response: httpx.Response, meta: dict[str, str]) -> Failure:
    status = response.status_code
    retry_after = None
    if status == 429:
        error_class = ErrorClass.rate_limited
    elif status >= 500:
        error_class = ErrorClass.server_error
    else:
        error_class = ErrorClass.client_error
    if error_class is not ErrorClass.client_error:
        if millis := parse_retry_after(response.headers.get("retry-after-ms")):
            retry_after = millis / 1000.0
        else:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
    return Failure(
        error_class=error_class,
        reason=f"HTTP {status}",
        detail=response.content,
        status=status,
        retry_after=retry_after,
        meta=meta,
    )


def transport_failure(exc: Exception) -> Failure:
    """Classify an exception from the transport as a ``timeout`` or a ``connection`` fault."""
    # httpx_aiohttp maps aiohttp's errors to httpx's, but loosely (a server that hangs
    # up becomes ConnectTimeout), so the original cause decides.
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    is_timeout = isinstance(cause, TimeoutError) or (
        isinstance(exc, httpx.TimeoutException) and not isinstance(cause, aiohttp.ClientError)
    )
    return Failure(
        error_class=ErrorClass.timeout if is_timeout else ErrorClass.connection,
        reason=type(cause).__name__,
        detail=str(cause),
    )


def _error_failure(error: object) -> Failure:
    """Classify an ``{"error": ...}`` object found in a 200 body or a stream event."""
    code = error.get("code") if isinstance(error, dict) else None
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    if code == 429 or code == "rate_limit_exceeded" or "rate_limit" in kind:
        error_class = ErrorClass.rate_limited
    elif (type(code) is int and code >= 500) or kind in ("server_error", "overloaded_error"):
        error_class = ErrorClass.server_error
    else:
        error_class = ErrorClass.bad_response
    shown = error.get("message", error) if isinstance(error, dict) else error
    return Failure(error_class=error_class, reason="error in response", detail=str(shown))


def _text(content: object) -> str | None:
    """The text of a message's content: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return None


def _parse_completion(data: bytes, status: int, meta: dict[str, str]) -> Answer | Failure:
    bad = Failure(
        error_class=ErrorClass.bad_response, reason="", detail=data, status=status, meta=meta
    )
    try:
        doc = json.loads(data)
    except ValueError:
        return replace(bad, reason="not JSON")
    if not isinstance(doc, dict):
        return replace(bad, reason="not a JSON object")
    model = doc.get("model")
    served_model = model if isinstance(model, str) else None
    if doc.get("error"):
        return replace(
            _error_failure(doc["error"]), status=status, served_model=served_model, meta=meta
        )
    choices = doc.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
    output = _text(message.get("content")) if isinstance(message, dict) else None
    if output is None:
        # No text but a finished answer (e.g. a tool call) is an empty output.
        if (
            not isinstance(message, dict)
            or message.get("content", 0) is not None
            or not finish_reason
        ):
            return replace(bad, reason="no choices[0].message.content", served_model=served_model)
        output = ""
    usage = _usage(doc.get("usage"))
    return Answer(
        output=output,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        ttft_ms=None,
        status=status,
        served_model=served_model,
        meta=meta,
        logprobs=choice.get("logprobs") if isinstance(choice, dict) else None,
    )


class _SSEDecoder:
    """Server-sent events -> the data of each complete event.

    Lines may be split across network chunks; ``:`` comments (keep-alives) and the
    ``event``, ``id`` and ``retry`` fields are skipped, because OpenAI-compatible servers
    put everything, errors included, in ``data``.
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = (self._buffer + chunk).split(b"\n") if self._buffer else chunk.split(b"\n")
        self._buffer = lines.pop()
        events: list[bytes] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[bytes]:
        """Flush what is left when the body ends, even without a final blank line."""
        events: list[bytes] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        if self._data:
            events.append(b"\n".join(self._data))
            self._data = []
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                events.append(b"\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            self._data.append(line[6:] if line.startswith(b"data: ") else line[5:])


class _StreamState:
    """The answer assembled from a stream's chunks so far."""

    __slots__ = ("done", "finish_reason", "model", "parts", "started", "ttft_ms", "usage")

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: object = None
        self.model: str | None = None
        self.ttft_ms: float | None = None
        self.done = False

    def feed(self, events: list[bytes]) -> Failure | None:
        for data in events:
            if self.done:
                continue
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                doc = json.loads(data)
            except ValueError:
                return Failure(
                    error_class=ErrorClass.bad_response,
                    reason="event is not JSON",
                    detail=data,
                    served_model=self.model,
                )
            if not isinstance(doc, dict):
                return Failure(
                    error_class=ErrorClass.bad_response,
                    reason="event is not a JSON object",
                    detail=data,
                    served_model=self.model,
                )
            if doc.get("error"):
                return replace(_error_failure(doc["error"]), served_model=self.model)
            if self.model is None and isinstance(doc.get("model"), str):
                self.model = doc["model"]
            if usage := doc.get("usage"):
                self.usage = usage
            choices = doc.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str) and content:
                    if self.ttft_ms is None:
                        self.ttft_ms = (time.perf_counter() - self.started) * 1000.0
                    self.parts.append(content)
                reason = choice.get("finish_reason")
                if isinstance(reason, str) and reason:
                    self.finish_reason = reason
        return None

    def finish(self, status: int, meta: dict[str, str]) -> Answer | Failure:
        if self.finish_reason is None or not self.done:
            missing = "finish_reason" if self.finish_reason is None else "[DONE]"
            return Failure(
                error_class=ErrorClass.bad_response,
                reason=f"stream ended without {missing} after {sum(map(len, self.parts))} chars",
                status=status,
                served_model=self.model,
                meta=meta,
            )
        usage = _usage(self.usage)
        return Answer(
            output="".join(self.parts),
            finish_reason=self.finish_reason,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            ttft_ms=self.ttft_ms,
            status=status,
            served_model=self.model,
            meta=meta,
        )
