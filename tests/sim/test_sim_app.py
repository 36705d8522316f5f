"""Chat completions over real HTTP: shape, quality, logical days, seeds, streaming."""

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from routewatch.evalset import EvalSet, Item

Chat = Callable[..., httpx.Response]

DEGRADES_ON = "2026-03-10"
"""The day the shared scenario's ``degrades`` model drops to quality 0 (see conftest)."""


def prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in item.prompt]


def content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def at(day: str, sample: int = 0) -> dict[str, str]:
    return {"X-Routewatch-At": f"{day}T06:00:00+00:00", "X-Routewatch-Sample": str(sample)}


def test_completion_has_the_openai_shape(chat: Chat) -> None:
    body = chat("perfect").json()

    assert body["object"] == "chat.completion"
    assert body["model"] == "perfect"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_path_without_v1_is_answered_too(sim_url: str) -> None:
    body = {"model": "perfect", "messages": [{"role": "user", "content": "hi"}]}

    response = httpx.post(f"{sim_url}/chat/completions", json=body)

    assert response.status_code == 200


def test_quality_one_answers_every_item_with_its_reference(chat: Chat, faq: EvalSet) -> None:
    for item in faq.items:
        assert content(chat("perfect", prompt(item), headers=at("2026-03-01"))) == item.reference


def test_quality_zero_never_answers_with_the_reference(chat: Chat, faq: EvalSet) -> None:
    for item in faq.items:
        for sample in range(3):
            answer = content(chat("hopeless", prompt(item), headers=at("2026-03-01", sample)))
            assert answer != item.reference


def test_a_change_switches_quality_from_its_logical_day(chat: Chat, faq: EvalSet) -> None:
    item = faq.items[0]

    before = content(chat("degrades", prompt(item), headers=at("2026-03-09")))
    on_the_day = content(chat("degrades", prompt(item), headers=at(DEGRADES_ON)))

    assert before == item.reference
    assert on_the_day != item.reference


def test_same_seed_model_item_day_and_sample_give_the_same_answer(chat: Chat, faq: EvalSet) -> None:
    def answers() -> list[str]:
        return [
            content(chat("coin", prompt(item), headers=at("2026-03-01", sample)))
            for item in faq.items
            for sample in range(4)
        ]

    first = answers()

    assert answers() == first
    assert len(set(first)) > len(faq.items)  # samples differ from each other


def test_unknown_prompt_gets_a_generic_answer(chat: Chat) -> None:
    answer = content(chat("perfect", [{"role": "user", "content": "Where is my parcel?"}]))

    assert "Where is my parcel?" in answer


def test_json_object_format_is_answered_as_a_normal_model(chat: Chat, faq: EvalSet) -> None:
    item = faq.items[0]

    response = chat("perfect", prompt(item), response_format={"type": "json_object"})

    assert content(response) == item.reference


def test_invalid_body_is_400_with_an_openai_error(sim_url: str) -> None:
    response = httpx.post(f"{sim_url}/v1/chat/completions", json={"model": "perfect"})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in response.json()["error"]["message"]


def test_non_json_body_is_400(sim_url: str) -> None:
    response = httpx.post(f"{sim_url}/v1/chat/completions", content=b"{nope")

    assert response.status_code == 400


def test_bad_logical_time_header_is_400(chat: Chat) -> None:
    response = chat("perfect", headers={"X-Routewatch-At": "yesterday"})

    assert response.status_code == 400
    assert "X-Routewatch-At" in response.json()["error"]["message"].title()


def test_unknown_model_is_404_when_models_are_strict(start_sim: Any, chat_to: Any) -> None:
    url = start_sim({"strict_models": True, "models": {"known": {}}})

    response = chat_to(url, "unknown")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_serve_as_answers_as_the_other_model_with_the_fallback_header(
    chat: Chat, faq: EvalSet
) -> None:
    item = faq.items[1]

    response = chat("fallback", prompt(item), headers=at("2026-03-01"))

    assert response.json()["model"] == "perfect"
    assert response.headers["x-litellm-attempted-fallbacks"] == "1"
    assert content(response) == item.reference


def stream(sim_url: str, model: str, messages: Any = None, **body: Any) -> tuple[list[Any], float]:
    """The parsed events of a streamed answer, and seconds to the first content chunk."""
    events: list[Any] = []
    ttft = 0.0
    payload = {
        "model": model,
        "messages": messages or [{"role": "user", "content": "Tell me a story"}],
        "stream": True,
        **body,
    }
    start = time.monotonic()
    with httpx.stream("POST", f"{sim_url}/v1/chat/completions", json=payload) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
            if len(events) == 1:
                ttft = time.monotonic() - start
    return events, ttft


def test_stream_first_token_comes_well_before_the_end(sim_url: str) -> None:
    start = time.monotonic()

    events, ttft = stream(sim_url, "slow")

    total = time.monotonic() - start
    assert events[0]["choices"][0]["delta"]["content"]
    assert ttft < 0.5 * total
    assert total >= 0.29


def test_stream_ends_with_stop_then_usage_then_done(sim_url: str) -> None:
    events, _ = stream(sim_url, "perfect", stream_options={"include_usage": True})

    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == []
    assert events[-2]["usage"]["completion_tokens"] > 0
    assert events[-1] == "[DONE]"


def test_stream_pieces_join_into_the_answer(sim_url: str, faq: EvalSet) -> None:
    item = faq.items[0]

    events, _ = stream(sim_url, "perfect", prompt(item), stream_options={"include_usage": False})

    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == item.reference
    assert "usage" not in events[-2]
