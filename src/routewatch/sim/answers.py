"""What a simulated model says to an eval item: its reference, or a plausible wrong answer.

The simulator recognises an item by its prompt (``AnswerBook``), so answers depend
on the eval sets it was started with. Every choice is a pure function of a seeded
hash (``unit``), which makes a logical run reproducible; the judge in ``verdicts``
agrees with these answers, so a wrong answer here is never judged a match there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routewatch.evalset import CheckKind, EvalSet

VAGUE_ANSWER = (
    "I'm not sure about that. Please check the help center or contact support for details."
)
"""The non-answer a weak model falls back on; the judge never counts it as a match."""

BROKEN_JSON_SHARE = 0.25
"""Of the wrong answers to a JSON item, the share that is not even valid JSON."""

_NUMBER = re.compile(r"\d+")
_AUXILIARY = re.compile(
    r"\b(is|are|was|were|can|will|should|must|does|do|has|have|may|could|would)\b", re.I
)


def unit(*parts: object) -> float:
    """A uniform number in ``[0, 1)`` fixed by ``parts`` (a keyed hash, not ``random``)."""
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def prompt_key(messages: Iterable[tuple[str, str]]) -> str:
    """The canonical form of a prompt: a JSON list of ``[role, content]`` pairs."""
    return json.dumps([[r, c] for r, c in messages], ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownItem:
    """An eval item as the simulator needs it."""

    key: str
    """``<eval set>/<item id>``: names the item in seeds and draws."""
    reference: str | None
    schema: dict[str, Any] | None
    """The item's first ``json_schema`` check, if any."""
    others: tuple[str, ...]
    """The other references of the same set, for answers to the wrong question."""


class AnswerBook:
    """Every eval item, found by its prompt in one dictionary look-up."""

    def __init__(self, eval_sets: Mapping[str, EvalSet]) -> None:
        self._items: dict[str, KnownItem] = {}
        for name, evalset in eval_sets.items():
            references = tuple(i.reference for i in evalset.items if i.reference)
            for item in evalset.items:
                schema = next((c.arg for c in item.checks if c.kind is CheckKind.json_schema), None)
                key = prompt_key((m.role, m.content) for m in item.prompt)
                self._items.setdefault(
                    key,
                    KnownItem(
                        key=f"{name}/{item.id}",
                        reference=item.reference,
                        schema=schema if isinstance(schema, dict) else None,
                        others=tuple(r for r in references if r != item.reference),
                    ),
                )

    def __len__(self) -> int:
        return len(self._items)

    def find(self, messages: Iterable[tuple[str, str]]) -> KnownItem | None:
        """The item whose prompt is exactly ``messages`` (role and content), if any."""
        return self._items.get(prompt_key(messages))


def item_answer(item: KnownItem, *, correct: bool, u: float, prompt: Sequence[str]) -> str:
    """The reference when ``correct``, else a wrong answer chosen by ``u`` in ``[0, 1)``."""
    if item.reference is None:
        return generic_answer(prompt)
    return item.reference if correct else wrong_answer(item, u)


def wrong_answer(item: KnownItem, u: float) -> str:
    """A plausible answer that is not the reference, chosen by ``u`` in ``[0, 1)``.

    JSON items get valid JSON with one wrong value (sometimes broken JSON);
    answers with numbers get other numbers; the rest get a negation, another
    item's reference or a vague non-answer.
    """
    reference = item.reference or ""
    if item.schema is not None or _json_value(reference) is not None:
        return _wrong_json(reference, item.schema, u)
    if _NUMBER.search(reference):
        return _shift_numbers(reference, u)
    strategies = []
    if len(reference.split()) >= 4:
        strategies.append("negate")
    if item.others:
        strategies.append("other")
    strategies.append("vague")
    pick = int(u * len(strategies))
    rest = u * len(strategies) - pick
    match strategies[pick]:
        case "negate":
            return negate(reference)
        case "other":
            return item.others[int(rest * len(item.others))]
        case _:
            return VAGUE_ANSWER


def negate(text: str) -> str:
    """``text`` with its first auxiliary verb negated, or prefixed with "Do not"."""
    match = _AUXILIARY.search(text)
    if match is None:
        return f"Do not {text[:1].lower()}{text[1:]}"
    word = match.group(0)
    negated = f"{word}not" if word.lower() == "can" else f"{word} not"
    return f"{text[: match.start()]}{negated}{text[match.end() :]}"


def _shift_numbers(text: str, u: float) -> str:
    step = 1 + int(u * 9)

    def shift(match: re.Match[str]) -> str:
        digits = match.group(0)
        return f"{int(digits) + step:0{len(digits)}d}"

    return _NUMBER.sub(shift, text)


def _json_value(text: str) -> Any:
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _wrong_json(reference: str, schema: dict[str, Any] | None, u: float) -> str:
    value = _json_value(reference)
    if not isinstance(value, dict):
        value = {"answer": "unknown"}
    if u < BROKEN_JSON_SHARE:
        text = json.dumps(value)
        return text[: max(1, len(text) // 2)]
    properties = (schema or {}).get("properties", {})
    wrong = dict(value)
    for key, old in value.items():
        options = properties.get(key, {}).get("enum", []) if isinstance(properties, dict) else []
        others = [o for o in options if o != old]
        if others:
            wrong[key] = others[0]
            return json.dumps(wrong)
    for key, old in value.items():
        if isinstance(old, bool):
            wrong[key] = not old
        elif isinstance(old, int | float):
            wrong[key] = old + 1
        elif isinstance(old, str):
            wrong[key] = "unknown" if old != "unknown" else "n/a"
        else:
            continue
        return json.dumps(wrong)
    return json.dumps({**value, "answer": "unknown"})


def generic_answer(prompt: Sequence[str]) -> str:
    """A plausible answer to a prompt the simulator does not know."""
    words = " ".join(prompt[-1].split()[:12]) if prompt else ""
    topic = f'About "{words}": ' if words else ""
    return (
        f"{topic}the short answer is that it depends on your account and plan; "
        "the help center has step-by-step details."
    )
