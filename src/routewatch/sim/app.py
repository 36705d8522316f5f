"""The simulator's HTTP surface: OpenAI-compatible chat completions, faults and admin.

``create_app(scenario, eval_sets)`` builds the Starlette app that ``routewatch sim
serve``, ``routewatch demo`` and the tests run on a loopback port. The decisions
live in ``state.Simulator``; this module parses requests and shapes responses,
including the faulty ones a real gateway produces (429, 500, HTML, cut JSON,
cut streams, hangs and connection resets). No authentication: a loopback tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from routewatch.errors import InputError
from routewatch.evalset import EvalSet
from routewatch.sim.scenario import Behaviour, Scenario, parse_scenario
from routewatch.sim.state import Answer, Moment, Simulator
from routewatch.sim.verdicts import pairwise_answer, reply_logprobs

AT_HEADER = "x-routewatch-at"
"""ISO 8601 logical time of the run; picks the day's behaviour and seeds the draws."""
SAMPLE_HEADER = "x-routewatch-sample"
"""Sample index of the item within the run; part of the seed."""
FALLBACK_HEADER = "x-litellm-attempted-fallbacks"
"""Sent (``1``) when a model answers as its ``serve_as``, as LiteLLM does after a fallback."""

STREAM_PIECES = 4
"""At most this many content chunks per streamed answer: enough to measure TTFT, few sleeps."""

_ID_PREFIX = uuid.uuid4().hex[:8]
_ID_COUNTER = itertools.count()

GATEWAY_ERROR_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class _Body(BaseModel):
    # Real clients send many more parameters (temperature, tools, ...): ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ContentPart(_Body):
    """One part of a multi-part message content; only text parts carry text."""

    type: str
    """``text`` (others, such as images, are ignored)."""
    text: str | None = None
    """The text of a ``text`` part."""


class ChatMessage(_Body):
    """One message of a chat request."""

    role: str
    """Chat role."""
    content: str | list[ContentPart] | None = None
    """Text, a list of parts, or null (an assistant's tool call)."""

    @property
    def text(self) -> str:
        """The message's text, parts joined."""
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(_Body):
    """Streaming options."""

    include_usage: bool = False
    """Send a last chunk with ``usage`` and no choices."""


class JsonSchemaFormat(_Body):
    """The ``json_schema`` member of ``response_format``."""

    name: str | None = None
    """The schema's name."""
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    """The JSON schema the answer must validate against."""


class ResponseFormat(_Body):
    """Structured-output request: ``json_schema`` marks a judge call."""

    type: str
    """``text``, ``json_object`` or ``json_schema``."""
    json_schema: JsonSchemaFormat | None = None
    """The schema, for ``json_schema``."""


class ChatBody(_Body):
    """The fields of ``POST /v1/chat/completions`` the simulator reads."""

    model: str = Field(min_length=1)
    """Model name; picks the behaviour."""
    messages: list[ChatMessage] = Field(min_length=1)
    """The prompt."""
    stream: bool = False
    """Answer with server-sent events."""
    stream_options: StreamOptions | None = None
    """Streaming options."""
    response_format: ResponseFormat | None = None
    """Structured output; ``json_schema`` makes this a judge call."""
    logprobs: bool = False
    """Add ``choices[0].logprobs`` to a JSON answer (see ``verdicts.reply_logprobs``)."""
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    """Alternatives listed per token, with ``logprobs``."""


def create_app(scenario: Scenario, eval_sets: Mapping[str, EvalSet] | None = None) -> Starlette:
    """The simulator as an ASGI app, answering ``eval_sets`` items as ``scenario`` says."""
    sim = Simulator(scenario, eval_sets or {})
    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/admin/scenario", get_scenario, methods=["GET"]),
        Route("/admin/scenario", put_scenario, methods=["PUT"]),
        Route("/admin/models/{name:path}", model_admin, methods=["GET", "PATCH", "DELETE"]),
        Route("/admin/stats", stats, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app


def _sim(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim


def openai_error(status: int, message: str, *, kind: str, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: an answer, a verdict, or the fault the scenario draws."""
    started = time.monotonic()
    sim = _sim(request)
    try:
        body = ChatBody.model_validate(json.loads(await request.body()))
        moment = read_moment(request.headers)
    except (ValueError, ValidationError) as exc:
        sim.count("(invalid body)", "bad_request")
        return openai_error(400, _reason(exc), kind="invalid_request_error")
    if not sim.scenario.knows(body.model):
        sim.count(body.model, "not_found")
        return openai_error(
            404,
            f"The model `{body.model}` does not exist (not in the simulator's scenario).",
            kind="invalid_request_error",
            code="model_not_found",
        )
    served, behaviour = body.model, sim.behaviour(body.model, moment.day)
    headers = {}
    if behaviour.serve_as is not None:
        served, behaviour = behaviour.serve_as, sim.behaviour(behaviour.serve_as, moment.day)
        headers[FALLBACK_HEADER] = "1"
    fault = sim.fault(behaviour.faults)
    if fault is not None and fault != "truncated":
        sim.count(body.model, fault)
        early = await _fault_response(fault, behaviour, request)
        if early is not None:
            return early
    schema = None
    if body.response_format is not None and body.response_format.type == "json_schema":
        fmt = body.response_format.json_schema
        schema = fmt.schema_ if fmt is not None else {}
    messages = [(m.role, m.text) for m in body.messages]
    preference = None
    if schema is not None:
        preference = pairwise_answer("\n".join(text for _, text in messages))
    if preference is not None:
        # Pairwise judge calls are counted apart, so tests can count them.
        answer = Answer(content=preference, outcome="pairwise")
    else:
        answer = sim.answer(
            model=served, behaviour=behaviour, messages=messages, schema=schema, moment=moment
        )
    if fault is None or fault == "truncated":
        sim.count(body.model, fault or answer.outcome)
    reply = _Reply(
        model=served,
        content=answer.content,
        prompt_tokens=_tokens(sum(len(m.text) for m in body.messages)),
        latency_s=sim.latency_s(behaviour),
        truncated=fault == "truncated",
        logprobs=(
            reply_logprobs(answer.content, schema, body.top_logprobs or 0)
            if body.logprobs
            else None
        ),
    )
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(
            reply.events(behaviour.ttft_fraction, include_usage=include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **headers},
        )
    body_bytes = reply.body()
    # The drawn latency counts from the request's start, so the simulator's own work on
    # it is part of the latency rather than added to it.
    await asyncio.sleep(max(0.0, reply.latency_s - (time.monotonic() - started)))
    return Response(body_bytes, media_type="application/json", headers=headers)


async def _fault_response(fault: str, behaviour: Behaviour, request: Request) -> Response | None:
    """The response for ``fault``, or None when the request goes on (after a hang)."""
    faults = behaviour.faults
    match fault:
        case "rate_limited":
            wait = _seconds(faults.retry_after_s)
            response = openai_error(
                429,
                f"Rate limit reached (simulated). Please try again in {wait}s.",
                kind="requests",
                code="rate_limit_exceeded",
            )
            response.headers["retry-after"] = wait
            response.headers["retry-after-ms"] = str(round(faults.retry_after_s * 1000))
            return response
        case "server_error":
            return openai_error(
                500,
                "The server had an error while processing your request (simulated).",
                kind="server_error",
            )
        case "bad_json":
            return Response(GATEWAY_ERROR_PAGE, media_type="text/html")
        case "reset":
            return ConnectionReset()
        case _:  # hang
            if await _sleep_unless_disconnected(request.receive, faults.hang_s):
                return Response(status_code=499)
            return None


async def _sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep, ending early (True) when the client goes away; hung requests don't pile up."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(disconnected())
    done, pending = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return watcher in done


class ConnectionReset(Response):
    """Drops the connection with a TCP reset (RST) before any byte of a response.

    ASGI has no way to abort a connection, so this reaches the server's transport
    through the ``receive`` callable (uvicorn binds it to its request cycle, which
    holds the transport). ``SO_LINGER`` 0 turns the close into a reset; awaiting
    the disconnect before returning keeps uvicorn from logging an incomplete
    response. Under a server without a reachable transport it raises instead.
    """

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Abort the connection under the request; ``send`` is never called."""
        transport = getattr(getattr(receive, "__self__", None), "transport", None)
        if transport is None or not hasattr(transport, "abort"):
            raise ConnectionResetError("simulated connection reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Without linger the abort still ends the connection, with a FIN.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        while (await receive())["type"] != "http.disconnect":
            pass


def read_moment(headers: Headers) -> Moment:
    """The logical time and sample index from the request headers.

    Raises:
        ValueError: a header is not ISO 8601 or a whole number >= 0.
    """
    at = headers.get(AT_HEADER)
    raw_sample = headers.get(SAMPLE_HEADER, "0")
    if not raw_sample.isdigit():
        raise ValueError(f"{SAMPLE_HEADER} must be a whole number >= 0, got {raw_sample!r}")
    if at is None:
        return Moment(day=datetime.now(UTC).date(), sample=int(raw_sample), seeded=False)
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise ValueError(f"{AT_HEADER} must be an ISO 8601 time, got {at!r}") from None
    return Moment(day=when.date(), sample=int(raw_sample), seeded=True)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"Invalid body: {where}: {err['msg']}" if where else f"Invalid body: {err['msg']}"
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return "The body is not valid JSON."
    return str(exc)


def _seconds(value: float) -> str:
    """Seconds as ``Retry-After`` text: ``2``, ``0.25``; never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _tokens(chars: int) -> int:
    """A token estimate: four characters a token."""
    return max(1, math.ceil(chars / 4))


class _Reply:
    """One successful answer, as a JSON body or as server-sent events."""

    def __init__(
        self,
        *,
        model: str,
        content: str,
        prompt_tokens: int,
        latency_s: float,
        truncated: bool,
        logprobs: dict[str, Any] | None = None,
    ) -> None:
        self.id = f"chatcmpl-sim-{_ID_PREFIX}{next(_ID_COUNTER):08x}"
        self.created = int(time.time())
        self.model = model
        self.content = content
        self.latency_s = latency_s
        self.truncated = truncated
        self.logprobs = logprobs
        completion = _tokens(len(content))
        self.usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    def body(self) -> bytes:
        """The ``chat.completion`` JSON; cut in half when truncated."""
        data = json.dumps(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.content},
                        "logprobs": self.logprobs,
                        "finish_reason": "stop",
                    }
                ],
                "usage": self.usage,
            }
        ).encode("utf-8")
        return data[: len(data) // 2] if self.truncated else data

    def _chunk_head(self) -> str:
        """The start of every chunk's JSON, encoded once per stream (it is the costly part)."""
        head = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        return json.dumps(head)[:-1]

    @staticmethod
    def _chunk(head: str, delta: dict[str, str], finish: str | None) -> bytes:
        choice = (
            f'{{"index": 0, "delta": {json.dumps(delta)}, "finish_reason": {json.dumps(finish)}}}'
        )
        return f'data: {head}, "choices": [{choice}]}}\n\n'.encode()

    async def events(self, ttft_fraction: float, *, include_usage: bool) -> AsyncIterator[bytes]:
        """Content chunks (the first after the TTFT), the finish chunk, usage, ``[DONE]``.

        A truncated stream stops after half of the content chunks, without
        ``finish_reason`` and ``[DONE]``.
        """
        pieces = _pieces(self.content)
        ttft = self.latency_s * ttft_fraction
        gap = (self.latency_s - ttft) / len(pieces)
        stop_after = max(1, len(pieces) // 2) if self.truncated else len(pieces)
        head = self._chunk_head()
        await asyncio.sleep(ttft)
        for i, piece in enumerate(pieces[:stop_after]):
            if i:
                await asyncio.sleep(gap)
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            yield self._chunk(head, delta, None)
        if self.truncated:
            return
        await asyncio.sleep(gap)
        yield self._chunk(head, {}, "stop")
        if include_usage:
            yield f'data: {head}, "choices": [], "usage": {json.dumps(self.usage)}}}\n\n'.encode()
        yield b"data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    if not text:
        return [""]
    count = min(STREAM_PIECES, len(text))
    size = math.ceil(len(text) / count)
    return [text[i : i + size] for i in range(0, len(text), size)]


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the models the scenario names."""
    names = sorted(_sim(request).scenario.models)
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "routewatch-sim"} for n in names]
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: alive, and how many eval items it recognises."""
    return JSONResponse({"status": "ok", "eval_items": len(_sim(request).book)})


async def get_scenario(request: Request) -> Response:
    """``GET /admin/scenario``: the current scenario, as ``PUT`` accepts it."""
    return JSONResponse(_sim(request).scenario.as_json())


async def put_scenario(request: Request) -> Response:
    """``PUT /admin/scenario``: replace the scenario (and drop overrides); 422 on a bad one."""
    sim = _sim(request)
    try:
        scenario = parse_scenario(json.loads(await request.body()))
    except ValueError as exc:
        return _unprocessable([_reason(exc)])
    except InputError as exc:
        return _unprocessable([f"{p.field or '(body)'}: {p.message}" for p in exc.problems])
    sim.replace(scenario)
    return JSONResponse(scenario.as_json())


async def model_admin(request: Request) -> Response:
    """``GET``/``PATCH``/``DELETE /admin/models/{name}``: read, override, or clear an override.

    ``GET`` takes ``?at=ISO8601`` (default now) and shows the effective behaviour.
    """
    sim = _sim(request)
    name = request.path_params["name"]
    if not sim.scenario.knows(name):
        return _unprocessable([f"unknown model {name!r} (strict_models is on)"], status=404)
    if request.method == "PATCH":
        try:
            fields = Behaviour.model_validate(json.loads(await request.body()))
            sim.patch(name, fields)
        except ValueError as exc:
            return _unprocessable([_reason(exc)])
        except InputError as exc:
            return _unprocessable([p.message for p in exc.problems])
    elif request.method == "DELETE":
        sim.unpatch(name)
    try:
        at = request.query_params.get("at")
        day = datetime.fromisoformat(at).date() if at else datetime.now(UTC).date()
    except ValueError:
        return _unprocessable([f"`at` must be an ISO 8601 time, got {at!r}"])
    override = sim.overrides.get(name)
    return JSONResponse(
        {
            "model": name,
            "day": day.isoformat(),
            "behaviour": sim.behaviour(name, day).model_dump(mode="json"),
            "override": override.model_dump(mode="json", exclude_unset=True) if override else None,
        }
    )


async def stats(request: Request) -> Response:
    """``GET /admin/stats``: request counts per outcome and model; ``DELETE`` zeroes them."""
    sim = _sim(request)
    if request.method == "DELETE":
        sim.counts.clear()
    return JSONResponse(sim.stats())


def _unprocessable(problems: list[str], *, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": problems[0], "problems": problems}, status_code=status)
