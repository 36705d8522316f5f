"""OpenAIClient against scripted servers: answers, error classes, retries, secrets."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import httpx
import pytest
from provider_fakes import (
    FakeProvider,
    Reply,
    client_for,
    closed_port_url,
    completion,
    delayed,
    raw_server,
    read_request,
    reply_json,
    reply_text,
)

from routewatch.config import Provider
from routewatch.errors import MissingSecretError
from routewatch.providers.base import ChatRequest, ErrorClass
from routewatch.providers.limits import RetryPolicy
from routewatch.providers.openai import OpenAIClient

pytestmark = pytest.mark.anyio

Serve = Callable[[FakeProvider], str]
ASK = ChatRequest(model="asked-model", messages=[{"role": "user", "content": "Refund window?"}])


async def test_answer_records_output_tokens_and_served_model(serve: Serve) -> None:
    url = serve(FakeProvider(reply_json(completion("Thirty days.", model="served-model"))))

    async with client_for(url) as client:
        result = await client.complete(ASK)

    assert result.ok
    assert (result.output, result.finish_reason) == ("Thirty days.", "stop")
    assert (result.tokens_in, result.tokens_out) == (11, 3)
    assert (result.served_model, result.status, result.attempts) == ("served-model", 200, 1)
    assert result.latency_ms > 0
    assert result.ttft_ms is None


async def test_a_query_in_base_url_stays_the_query_of_every_request(serve: Serve) -> None:
    """Azure OpenAI's `?api-version=...`: the path is appended before it, not after."""
    fake = FakeProvider(reply_json(completion("Thirty days.")))
    url = serve(fake)

    async with client_for(url + "?api-version=2024-10-21") as client:
        result = await client.complete(ASK)

    assert result.ok, result.error_message
    assert [s.query for s in fake.seen] == ["api-version=2024-10-21"]


async def test_body_carries_model_messages_params_and_stream_flag(serve: Serve) -> None:
    fake = FakeProvider()
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": "hi"}], params={"temperature": 0.2}
    )

    async with client_for(serve(fake)) as client:
        await client.complete(request)

    assert fake.seen[0].body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "stream": False,
    }


async def test_request_headers_are_sent_without_authorization_when_no_key(serve: Serve) -> None:
    fake = FakeProvider()
    request = ChatRequest(model="m", messages=[], headers={"X-Routewatch-At": "2026-03-01"})

    async with client_for(serve(fake)) as client:
        await client.complete(request)

    headers = fake.seen[0].headers
    assert headers["x-routewatch-at"] == "2026-03-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


async def test_missing_usage_leaves_tokens_unknown(serve: Serve) -> None:
    doc = completion()
    del doc["usage"]

    async with client_for(serve(FakeProvider(reply_json(doc)))) as client:
        result = await client.complete(ASK)

    assert result.ok
    assert (result.tokens_in, result.tokens_out) == (None, None)


async def test_null_content_with_finish_reason_is_an_empty_answer(serve: Serve) -> None:
    reply = reply_json(completion(None, finish_reason="tool_calls"))

    async with client_for(serve(FakeProvider(reply))) as client:
        result = await client.complete(ASK)

    assert result.ok
    assert (result.output, result.finish_reason) == ("", "tool_calls")


BAD_STATUS: list[tuple[str, Reply, ErrorClass, int]] = [
    ("429", reply_json({"error": {}}, status=429), ErrorClass.rate_limited, 3),
    (
        "500",
        reply_json({"error": {"type": "server_error"}}, status=500),
        ErrorClass.server_error,
        3,
    ),
    ("502-text", reply_text("Bad Gateway", status=502), ErrorClass.server_error, 3),
    ("400", reply_json({"error": {"message": "bad"}}, status=400), ErrorClass.client_error, 1),
    ("401", reply_text("no key", status=401), ErrorClass.client_error, 1),
    ("404", reply_text("no such model", status=404), ErrorClass.client_error, 1),
    ("html-200", reply_text("<html>gateway</html>"), ErrorClass.bad_response, 3),
    ("json-list", reply_json([1, 2]), ErrorClass.bad_response, 3),
    ("no-choices", reply_json({"id": "x", "model": "m"}), ErrorClass.bad_response, 3),
    ("empty-choices", reply_json({"choices": []}), ErrorClass.bad_response, 3),
    ("no-content", reply_json(completion(None, finish_reason=None)), ErrorClass.bad_response, 3),
    (
        "error-in-200",
        reply_json({"error": {"message": "upstream overloaded", "code": 503}}),
        ErrorClass.server_error,
        3,
    ),
]


@pytest.mark.parametrize(
    ("reply", "error_class", "attempts"),
    [case[1:] for case in BAD_STATUS],
    ids=[case[0] for case in BAD_STATUS],
)
async def test_fault_gets_its_error_class_after_its_attempts(
    serve: Serve, reply: Reply, error_class: ErrorClass, attempts: int
) -> None:
    fake = FakeProvider(reply)

    async with client_for(serve(fake), max_retries=2) as client:
        result = await client.complete(ASK)

    assert (result.error_class, result.attempts, len(fake.seen)) == (
        error_class,
        attempts,
        attempts,
    )
    assert result.output is None
    assert result.error_message


async def test_a_retry_that_succeeds_is_an_answer_with_its_attempts(serve: Serve) -> None:
    fake = FakeProvider(
        reply_text("oops", status=500), reply_text("oops", status=503), reply_json()
    )

    async with client_for(serve(fake), max_retries=4) as client:
        result = await client.complete(ASK)

    assert result.ok
    assert (result.attempts, result.status) == (3, 200)


async def test_retries_stop_at_max_retries(serve: Serve) -> None:
    fake = FakeProvider(reply_text("oops", status=500))

    async with client_for(serve(fake), max_retries=1) as client:
        result = await client.complete(ASK)

    assert (result.attempts, len(fake.seen)) == (2, 2)
    assert result.status == 500


async def test_error_message_is_short(serve: Serve) -> None:
    fake = FakeProvider(reply_text("x" * 5000, status=500))

    async with client_for(serve(fake), max_retries=0) as client:
        result = await client.complete(ASK)

    assert result.error_message is not None
    assert result.error_message.startswith("HTTP 500: xxx")
    assert len(result.error_message) < 250


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
async def test_retry_after_is_waited_before_the_next_attempt(serve: Serve, header: str) -> None:
    value = "0.3" if header == "retry-after" else "300"
    fake = FakeProvider(reply_text("slow down", status=429, headers={header: value}), reply_json())

    async with client_for(serve(fake), max_retries=1) as client:
        result = await client.complete(ASK)

    assert result.ok
    assert fake.gaps()[0] >= 0.3


async def test_latency_is_the_final_attempts_own_time(serve: Serve) -> None:
    fake = FakeProvider(
        reply_text("slow down", status=429, headers={"retry-after": "0.3"}),
        delayed(0.05, reply_json()),
    )

    async with client_for(serve(fake), max_retries=1) as client:
        result = await client.complete(ASK)

    assert result.attempts == 2
    assert 50 <= result.latency_ms < 300


async def test_retry_after_past_the_deadline_ends_the_call_at_once(serve: Serve) -> None:
    fake = FakeProvider(reply_text("later", status=429, headers={"retry-after": "30"}))
    provider = Provider(base_url=serve(fake))
    retry = RetryPolicy(max_retries=4, deadline_s=5.0)

    async with OpenAIClient("test", provider, {}, retry=retry) as client:
        result = await asyncio.wait_for(client.complete(ASK), timeout=2)

    assert (result.error_class, result.attempts) == (ErrorClass.rate_limited, 1)


async def test_slow_answer_is_a_timeout_on_every_attempt(serve: Serve) -> None:
    fake = FakeProvider(delayed(0.6, reply_json()))

    async with client_for(serve(fake), max_retries=1, timeout_s=0.2) as client:
        result = await client.complete(ASK)

    assert (result.error_class, result.attempts) == (ErrorClass.timeout, 2)


async def test_refused_connection_is_a_connection_error() -> None:
    async with client_for(closed_port_url(), max_retries=1) as client:
        result = await client.complete(ASK)

    assert (result.error_class, result.attempts, result.status) == (ErrorClass.connection, 2, None)


def _reset(sock: socket.socket) -> None:
    read_request(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_reset_before_an_answer_is_a_connection_error() -> None:
    with raw_server(_reset) as url:
        async with client_for(url, max_retries=1) as client:
            result = await client.complete(ASK)

    assert (result.error_class, result.attempts) == (ErrorClass.connection, 2)


def _hang_up_mid_body(sock: socket.socket) -> None:
    read_request(sock)
    sock.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n"
        b'{"choices": ['
    )


async def test_body_cut_short_is_a_connection_error() -> None:
    with raw_server(_hang_up_mid_body) as url:
        async with client_for(url, max_retries=0) as client:
            result = await client.complete(ASK)

    assert (result.error_class, result.attempts) == (ErrorClass.connection, 1)


async def test_gateway_headers_are_kept_lower_cased_and_short(serve: Serve) -> None:
    headers = {
        "X-LiteLLM-Attempted-Fallbacks": "1",
        "x-litellm-model-id": "m" * 300,
        "x-openrouter-provider": "DeepInfra",
        "llm_provider-x-ratelimit-remaining": "99",
        "x-request-id": "req-1",
        "openai-processing-ms": "812",
        "x-unrelated": "no",
    }
    fake = FakeProvider(reply_json(headers=headers))

    async with client_for(serve(fake)) as client:
        result = await client.complete(ASK)

    assert result.response_meta == {
        "x-litellm-attempted-fallbacks": "1",
        "x-litellm-model-id": "m" * 200,
        "x-openrouter-provider": "DeepInfra",
        "llm_provider-x-ratelimit-remaining": "99",
        "x-request-id": "req-1",
        "openai-processing-ms": "812",
    }


async def test_gateway_headers_are_kept_on_failures_too(serve: Serve) -> None:
    fake = FakeProvider(reply_text("down", status=503, headers={"x-request-id": "req-9"}))

    async with client_for(serve(fake), max_retries=0) as client:
        result = await client.complete(ASK)

    assert result.response_meta == {"x-request-id": "req-9"}


KEY = "sk-test-0123456789abcdef"


async def test_api_key_is_sent_as_bearer(serve: Serve) -> None:
    fake = FakeProvider()

    async with client_for(serve(fake), env={"RW_KEY": KEY}, api_key_env="RW_KEY") as client:
        await client.complete(ASK)

    assert fake.seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_api_key_echoed_by_the_server_never_reaches_the_result(serve: Serve) -> None:
    body = f"Incorrect API key provided: {KEY}. " + "Find your key at platform. " * 20
    fake = FakeProvider(reply_text(body, status=401))

    async with client_for(serve(fake), env={"RW_KEY": KEY}, api_key_env="RW_KEY") as client:
        result = await client.complete(ASK)

    assert result.error_class is ErrorClass.client_error
    assert KEY not in repr(result)
    assert "[api key]" in (result.error_message or "")


async def test_missing_key_raises_naming_the_variable(serve: Serve) -> None:
    fake = FakeProvider()

    async with client_for(serve(fake), env={}, api_key_env="RW_KEY") as client:
        with pytest.raises(MissingSecretError, match="RW_KEY"):
            await client.complete(ASK)

    assert fake.seen == []


async def test_proxy_from_env_is_used(serve: Serve) -> None:
    url = serve(FakeProvider())
    env = {"HTTP_PROXY": closed_port_url().removesuffix("/v1")}

    async with client_for(url, env=env, max_retries=0) as client:
        result = await client.complete(ASK)

    assert result.error_class is ErrorClass.connection


async def test_no_proxy_skips_the_proxy(serve: Serve) -> None:
    url = serve(FakeProvider())
    env = {"HTTP_PROXY": closed_port_url().removesuffix("/v1"), "NO_PROXY": "localhost,127.0.0.1"}

    async with client_for(url, env=env, max_retries=0) as client:
        result = await client.complete(ASK)

    assert result.ok


async def test_calls_in_a_row_reuse_one_connection(serve: Serve) -> None:
    fake = FakeProvider()

    async with client_for(serve(fake)) as client:
        for _ in range(5):
            await client.complete(ASK)

    assert len({seen.port for seen in fake.seen}) == 1


async def test_given_http_client_is_used_and_left_open(serve: Serve) -> None:
    fake = FakeProvider()
    provider = Provider(base_url=serve(fake))

    async with httpx.AsyncClient(headers={"x-team": "search"}) as http:
        async with OpenAIClient("test", provider, {}, http_client=http) as client:
            result = await client.complete(ASK)
        still_open = not http.is_closed

    assert result.ok
    assert fake.seen[0].headers["x-team"] == "search"
    assert still_open
