import pytest

from routewatch.providers.base import CallResult
from routewatch.runner import same_model, served_by_fallback


@pytest.mark.parametrize(
    ("requested", "served", "same"),
    [
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o", "gpt-4o-2024-08-06", True),
        ("openai/gpt-4o", "gpt-4o", True),
        ("gpt-4", "gpt-4-0613", True),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022", True),
        ("deepseek-ai/DeepSeek-V4-Flash", "DeepSeek-V4-Flash", True),
        ("gpt-4o", "gpt-4o-mini", False),
        ("gpt-4", "gpt-3", False),
        ("qwen3-32b", "qwen3-8b", False),
        ("chat-primary", "chat-backup", False),
    ],
)
def test_same_model_allows_prefixes_and_snapshot_tags_only(
    requested: str, served: str, same: bool
) -> None:
    assert same_model(requested, served) is same


def result(served: str | None, meta: dict[str, str] | None = None) -> CallResult:
    return CallResult(
        output="x",
        finish_reason="stop",
        tokens_in=1,
        tokens_out=1,
        latency_ms=1.0,
        ttft_ms=None,
        attempts=1,
        served_model=served,
        response_meta=meta or {},
    )


def test_a_litellm_fallback_header_flags_the_answer_even_from_the_same_name() -> None:
    assert served_by_fallback("gpt-4o", result("gpt-4o", {"x-litellm-attempted-fallbacks": "1"}))


def test_an_answer_without_a_model_name_is_not_flagged() -> None:
    assert not served_by_fallback("gpt-4o", result(None))
