"""The judge prompt: a Jinja2 template in which everything from an eval item or a model is data.

Every variable the template prints passes through ``escape_data`` (``&``, ``<``, ``>``
as entities), so an output cannot close ``</output>`` or open a tag of its own, and an
output that says "ignore the rubric" stays text inside the tags. Rendering is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2

from routewatch.evalset import Message

DEFAULT_TEMPLATE = "judge.j2"
SYSTEM_PROMPT = "You are a strict, fair grader. You grade exactly one criterion."


def escape_data(value: Any) -> Any:
    """Escape text so it cannot close or open a tag in the prompt; other values pass."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def template_source(name: str = DEFAULT_TEMPLATE) -> str:
    """The text of a packaged judge template."""
    return resources.files("routewatch.judge.templates").joinpath(name).read_text("utf-8")


_ENV = jinja2.Environment(
    # finalize runs on every printed expression, so no variable can skip escaping;
    # autoescape would HTML-escape quotes too, which a judge would read as noise.
    finalize=escape_data,
    autoescape=False,  # noqa: S701  (escaping is done by finalize, for a text prompt)
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeRequest:
    """What one judgement is about."""

    criterion: str
    criterion_text: str
    scale: tuple[int, int]
    messages: tuple[Message, ...]
    reference: str | None
    output: str


def render(source: str, request: JudgeRequest, *, structured: bool) -> list[dict[str, str]]:
    """The chat messages of a judge call for ``request``, from the template ``source``.

    Raises:
        jinja2.TemplateError: the template is broken (a bug or a bad override).
    """
    text = _ENV.from_string(source).render(
        criterion=request.criterion,
        criterion_text=request.criterion_text,
        scale_min=request.scale[0],
        scale_max=request.scale[1],
        messages=[{"role": m.role, "content": m.content} for m in request.messages],
        reference=request.reference,
        output=request.output,
        structured=structured,
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def verdict_schema(scale: tuple[int, int]) -> dict[str, Any]:
    """The ``response_format`` asking for a verdict: reasoning first, then the grade."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "verdict",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string"},
                    "score": {"type": "integer", "minimum": scale[0], "maximum": scale[1]},
                },
                "required": ["reasoning", "score"],
                "additionalProperties": False,
            },
        },
    }
