"""The admin endpoints, each on a server of the test's own."""

from collections.abc import Callable
from typing import Any

import httpx

from routewatch.evalset import EvalSet

Start = Callable[[dict[str, Any]], str]
ChatTo = Callable[..., httpx.Response]

FAST = {"defaults": {"latency_ms": {"fixed": 1}}}


def ask(chat_to: ChatTo, url: str, faq: EvalSet, model: str = "m") -> str:
    item = faq.items[0]
    messages = [{"role": m.role, "content": m.content} for m in item.prompt]
    response = chat_to(url, model, messages, headers={"X-Routewatch-At": "2026-03-01"})
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def test_healthz_says_ok_and_counts_recognised_items(start_sim: Start, faq: EvalSet) -> None:
    url = start_sim(FAST)

    body = httpx.get(f"{url}/healthz").json()

    assert body == {"status": "ok", "eval_items": len(faq.items)}


def test_get_scenario_returns_what_put_accepts(start_sim: Start) -> None:
    url = start_sim({**FAST, "seed": 5, "models": {"m": {"quality": 0.3}}})

    current = httpx.get(f"{url}/admin/scenario").json()
    response = httpx.put(f"{url}/admin/scenario", json=current)

    assert response.status_code == 200
    assert response.json() == current
    assert current["models"] == {"m": {"quality": 0.3}}


def test_put_scenario_replaces_the_behaviour(
    start_sim: Start, chat_to: ChatTo, faq: EvalSet
) -> None:
    url = start_sim({**FAST, "models": {"m": {"quality": 1.0}}})

    httpx.put(f"{url}/admin/scenario", json={**FAST, "models": {"m": {"quality": 0.0}}})

    assert ask(chat_to, url, faq) != faq.items[0].reference


def test_put_scenario_refuses_a_bad_one_with_the_reason(start_sim: Start) -> None:
    url = start_sim(FAST)

    response = httpx.put(f"{url}/admin/scenario", json={"models": {"m": {"quality": 2}}})

    assert response.status_code == 422
    assert response.json()["problems"] == [
        "models.m.quality: Input should be less than or equal to 1"
    ]


def test_patch_changes_a_model_from_now_on(start_sim: Start, chat_to: ChatTo, faq: EvalSet) -> None:
    url = start_sim({**FAST, "models": {"m": {"quality": 1.0}}})
    assert ask(chat_to, url, faq) == faq.items[0].reference

    response = httpx.patch(f"{url}/admin/models/m", json={"quality": 0.0})

    assert response.json()["behaviour"]["quality"] == 0.0
    assert ask(chat_to, url, faq) != faq.items[0].reference


def test_patch_keeps_earlier_overrides_and_merges_faults(start_sim: Start) -> None:
    url = start_sim(FAST)
    httpx.patch(f"{url}/admin/models/m", json={"faults": {"server_error": 0.5}})

    response = httpx.patch(f"{url}/admin/models/m", json={"faults": {"reset": 0.25}})

    assert response.json()["override"] == {"faults": {"server_error": 0.5, "reset": 0.25}}


def test_patch_refuses_fault_rates_above_one(start_sim: Start) -> None:
    url = start_sim({"defaults": {"faults": {"hang": 0.5}}})

    response = httpx.patch(f"{url}/admin/models/m", json={"faults": {"reset": 0.6}})

    assert response.status_code == 422
    assert "fault rates add up to 1.1" in response.json()["error"]


def test_delete_drops_the_override(start_sim: Start) -> None:
    url = start_sim(FAST)
    httpx.patch(f"{url}/admin/models/m", json={"quality": 0.1})

    response = httpx.delete(f"{url}/admin/models/m")

    assert response.json()["override"] is None
    assert response.json()["behaviour"]["quality"] == 0.9


def test_get_model_shows_the_behaviour_on_a_logical_day(start_sim: Start) -> None:
    url = start_sim({"models": {"m": {"changes": [{"from": "2026-03-10", "quality": 0.2}]}}})

    response = httpx.get(f"{url}/admin/models/m", params={"at": "2026-03-11T00:00:00Z"})

    assert response.json()["behaviour"]["quality"] == 0.2


def test_stats_count_requests_per_model_and_outcome(start_sim: Start, chat_to: ChatTo) -> None:
    url = start_sim({**FAST, "models": {"bad": {"faults": {"server_error": 1.0}}}})
    chat_to(url, "good")
    chat_to(url, "good")
    chat_to(url, "bad")

    stats = httpx.get(f"{url}/admin/stats").json()

    assert stats["requests"] == 3
    assert stats["models"] == {"bad": {"server_error": 1}, "good": {"ok": 2}}


def test_judge_calls_are_counted_as_judge(start_sim: Start, chat_to: ChatTo) -> None:
    url = start_sim(FAST)
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}

    chat_to(url, "j", response_format={"type": "json_schema", "json_schema": {"schema": schema}})

    assert httpx.get(f"{url}/admin/stats").json()["outcomes"] == {"judge": 1}
