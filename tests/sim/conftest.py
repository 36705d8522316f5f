"""The simulator on real loopback ports: one shared server whose model names say how they
behave, and a factory for servers that a test changes (admin calls, stats)."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

import routewatch.templates
from routewatch.evalset import EvalSet, load_eval_set
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread

SCENARIO: dict[str, Any] = {
    "seed": 7,
    "defaults": {"latency_ms": {"fixed": 2}},
    "models": {
        "perfect": {"quality": 1.0},
        "hopeless": {"quality": 0.0},
        "coin": {"quality": 0.5, "spread": 0.0},
        "degrades": {"quality": 1.0, "changes": [{"from": "2026-03-10", "quality": 0.0}]},
        "rate-limited": {"faults": {"rate_limited": 1.0, "retry_after_s": 0.25}},
        "failing": {"faults": {"server_error": 1.0}},
        "hanging": {"faults": {"hang": 1.0, "hang_s": 1.0}},
        "html": {"faults": {"bad_json": 1.0}},
        "truncating": {"faults": {"truncated": 1.0}},
        "resetting": {"faults": {"reset": 1.0}},
        "slow": {"latency_ms": {"fixed": 300}, "ttft_fraction": 0.2},
        "fallback": {"serve_as": "perfect"},
        "judge": {"quality": 1.0},
        "liar-judge": {"quality": 0.0},
    },
}


@pytest.fixture(scope="session")
def eval_sets() -> dict[str, EvalSet]:
    path = Path(routewatch.templates.__file__).parent / "support-faq.yaml"
    return {"support-faq": load_eval_set(path)}


@pytest.fixture(scope="session")
def faq(eval_sets: dict[str, EvalSet]) -> EvalSet:
    return eval_sets["support-faq"]


@pytest.fixture(scope="session")
def sim_url(eval_sets: dict[str, EvalSet]) -> Iterator[str]:
    with serve_in_thread(create_app(parse_scenario(SCENARIO), eval_sets)) as url:
        yield url


@pytest.fixture
def start_sim(eval_sets: dict[str, EvalSet]) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Start a server of this test's own on ``scenario``; returns its base URL."""
    with ExitStack() as stack:

        def start(scenario: dict[str, Any]) -> str:
            app = create_app(parse_scenario(scenario), eval_sets)
            return stack.enter_context(serve_in_thread(app))

        yield start


@pytest.fixture(scope="session")
def client() -> Iterator[httpx.Client]:
    """One client for the session: a new one per request costs ~40 ms of TLS setup."""
    with httpx.Client(timeout=5.0) as shared:
        yield shared


@pytest.fixture
def chat_to(client: httpx.Client) -> Callable[..., httpx.Response]:
    """POST a chat completion: ``chat_to(url, model, messages, headers=, timeout=, **body)``."""

    def call(
        url: str,
        model: str,
        messages: list[dict[str, str]] | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        **body: Any,
    ) -> httpx.Response:
        messages = messages or [{"role": "user", "content": "What is the weather like?"}]
        return client.post(
            f"{url}/v1/chat/completions",
            json={"model": model, "messages": messages, **body},
            headers=headers,
            timeout=timeout,
        )

    return call


@pytest.fixture
def chat(sim_url: str, chat_to: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
    """POST a chat completion to the shared server: ``chat(model, messages=None, **body)``."""

    def call(*args: Any, **kw: Any) -> httpx.Response:
        return chat_to(sim_url, *args, **kw)

    return call
