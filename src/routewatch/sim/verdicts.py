"""The simulated judge: a schema-valid verdict from whether an output matches its reference.

A judge call asks for structured output (``response_format`` with a JSON schema)
and carries the reference between ``<reference>`` tags and the judged output
between ``<output>`` tags, each with ``&``, ``<`` and ``>`` HTML-escaped, so text
inside them can never close a tag. ``fill_schema`` turns a verdict into JSON,
``nudge_grades`` adds a judge's noise, and ``reply_logprobs`` the ``logprobs`` a reply
carries when asked for them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

MATCH_RECALL = 0.8
"""Share of the reference's content words the output must contain to match it."""

_REFERENCE = re.compile(r"<reference>([^<]*)</reference>")
_OUTPUT = re.compile(r"<output>([^<]*)</output>")
_NOT_WORD = re.compile(r"[\W_]+")
_APOSTROPHES = re.compile(r"['\u2019]")

# A word list reads better as text than as 36 quoted strings.
STOP_WORDS = frozenset(
    "a an and are as at be by can for from i in is it its of on or our so that the their "  # noqa: SIM905
    "then there these this to was we were will with you your".split()
)
"""Words left out of the recall: an answer may rephrase them freely."""

NEGATIONS = frozenset(
    "not no never cannot cant dont doesnt isnt arent wasnt werent wont shouldnt mustnt "  # noqa: SIM905
    "none nothing neither nor".split()
)
"""An output with more of these than its reference says the opposite of it."""

_POSITIVE = ("pass", "yes", "true", "correct", "match", "matches", "good", "accept", "agree")
_NEGATIVE = ("fail", "no", "false", "incorrect", "mismatch", "bad", "reject", "disagree")


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeInput:
    """The reference and output found in a judge prompt, unescaped."""

    reference: str
    output: str


def find_judge_input(prompt: str) -> JudgeInput | None:
    """The last ``<reference>`` and ``<output>`` of ``prompt``, or None if either is missing."""
    references = _REFERENCE.findall(prompt)
    outputs = _OUTPUT.findall(prompt)
    if not references or not outputs:
        return None
    return JudgeInput(reference=unescape(references[-1]), output=unescape(outputs[-1]))


def unescape(text: str) -> str:
    """Undo the judge prompt's escaping of ``&``, ``<`` and ``>`` (and nothing else)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalise(text: str) -> str:
    """Casefolded words without punctuation, one space apart (``don't`` -> ``dont``)."""
    return " ".join(_NOT_WORD.sub(" ", _APOSTROPHES.sub("", text.casefold())).split())


def matches(reference: str, output: str) -> bool:
    """Whether ``output`` says what ``reference`` says.

    Two JSON values match when equal. Otherwise the output must contain the
    normalised reference or at least ``MATCH_RECALL`` of its content words, keep
    every number of the reference, and negate nothing the reference does not.
    """
    ref_json, out_json = _json(reference), _json(output)
    if ref_json is not None and out_json is not None:
        return bool(ref_json == out_json)
    ref, out = normalise(reference), normalise(output)
    ref_words, out_words = ref.split(), out.split()
    out_set = set(out_words)
    if any(w.isdigit() and w not in out_set for w in ref_words):
        return False
    if _negations(out_words) > _negations(ref_words):
        return False
    if f" {ref} " in f" {out} ":
        return True
    content = {w for w in ref_words if w not in STOP_WORDS} or set(ref_words)
    return bool(content) and len(content & out_set) / len(content) >= MATCH_RECALL


def _negations(words: list[str]) -> int:
    return sum(w in NEGATIONS for w in words)


def _json(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        return None


def fill_schema(schema: dict[str, Any], *, good: bool) -> Any:
    """A value valid against ``schema`` that gives the best grade if ``good``, else the worst.

    Bounded integers and numbers take their maximum or minimum, booleans are
    ``good``, enums take a positive or negative word, strings a short reasoning.
    Handles ``$ref`` into ``$defs``, ``anyOf``/``oneOf``, ``const`` and nesting.
    """
    return _Filler(schema, good).fill(schema, 0)


_MAX_DEPTH = 32


class _Filler:
    def __init__(self, root: dict[str, Any], good: bool) -> None:
        self.root = root
        self.good = good

    def fill(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        if "$ref" in schema:
            return self.fill(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._pick(schema["enum"])
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                return self.fill({**_without(schema, key), **chosen}, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return self._fill_type(kind, schema, depth)

    def _fill_type(self, kind: str, schema: dict[str, Any], depth: int) -> Any:
        match kind:
            case "object":
                properties = schema.get("properties", {})
                return {name: self.fill(sub, depth + 1) for name, sub in properties.items()}
            case "array":
                count = int(schema.get("minItems", 0))
                return [self.fill(schema.get("items", {}), depth + 1) for _ in range(count)]
            case "integer" | "number":
                return self._bounded(schema, integer=kind == "integer")
            case "boolean":
                return self.good
            case "null":
                return None
            case _:
                return self._reasoning(schema)

    def _bounded(self, schema: dict[str, Any], *, integer: bool) -> float | int:
        step = 1 if integer else 1e-6
        low = schema.get("minimum")
        if low is None and "exclusiveMinimum" in schema:
            low = schema["exclusiveMinimum"] + step
        high = schema.get("maximum")
        if high is None and "exclusiveMaximum" in schema:
            high = schema["exclusiveMaximum"] - step
        if self.good:
            value = high if high is not None else max(1, low if low is not None else 1)
        else:
            value = low if low is not None else min(0, high if high is not None else 0)
        return int(value) if integer else float(value)

    def _pick(self, options: list[Any]) -> Any:
        if all(isinstance(o, int | float) and not isinstance(o, bool) for o in options):
            return max(options) if self.good else min(options)
        words = _POSITIVE if self.good else _NEGATIVE
        for option in options:
            if isinstance(option, str) and normalise(option) in words:
                return option
        if all(isinstance(o, bool) for o in options):
            return self.good if self.good in options else options[0]
        return options[0] if self.good else options[-1]

    def _reasoning(self, schema: dict[str, Any]) -> str:
        text = (
            "The output agrees with the reference."
            if self.good
            else "The output does not agree with the reference."
        )
        least = int(schema.get("minLength", 0))
        most = schema.get("maxLength")
        text = text.ljust(least, ".")
        return text[: int(most)] if most is not None else text

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return {}
        node: Any = self.root
        for part in ref[2:].split("/"):
            if not isinstance(node, dict):
                return {}
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        return node


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _grade_bounds(schema: dict[str, Any], key: str) -> tuple[int, int] | None:
    """The scale of a top-level integer property with both bounds (a grade), or None."""
    properties = schema.get("properties")
    prop = properties.get(key) if isinstance(properties, dict) else None
    if not isinstance(prop, dict) or prop.get("type") != "integer":
        return None
    low, high = prop.get("minimum"), prop.get("maximum")
    if type(low) is not int or type(high) is not int or low >= high:
        return None
    return low, high


def nudge_grades(value: Any, schema: dict[str, Any], *, flip: float, up: float) -> Any:
    """``value`` with each grade one step off when ``flip`` < 0 (a draw minus the noise).

    A grade is a top-level integer property with a ``minimum`` and ``maximum``; it moves
    up when ``up`` < 0.5, else down, and the other way at the edge of its scale.
    """
    if flip >= 0 or not isinstance(value, dict):
        return value
    nudged = dict(value)
    for key, grade in value.items():
        bounds = _grade_bounds(schema, key)
        if bounds is None or type(grade) is not int:
            continue
        step = 1 if up < 0.5 else -1
        if not bounds[0] <= grade + step <= bounds[1]:
            step = -step
        nudged[key] = grade + step
    return nudged


LOGPROB_DECAY = 0.2
"""Each grade one step further from the one written is this many times as likely: most
mass on the written grade, some on its neighbours (a 1-5 grade of 5 weighs 4.75)."""
OTHER_TOKEN_P = 0.01
"""Probability of a non-grade token at a grade's place, which readers must skip."""
_TOKEN = re.compile(r"\s*[A-Za-z0-9]+|\s*[^\sA-Za-z0-9]+|\s+")


def reply_logprobs(content: str, schema: dict[str, Any] | None, top: int) -> dict[str, Any]:
    """``choices[0].logprobs`` for ``content``, with ``top`` alternatives per token.

    Deterministic. Text is cut into word and punctuation tokens, each certain. In a
    JSON verdict (``schema`` given) each grade is a token of its own whose alternatives
    are the grades of its scale, weighted by ``LOGPROB_DECAY`` per step from it, and one
    non-grade token.
    """
    pieces: list[tuple[str, tuple[int, int] | None]] = [(content, None)]
    value = _json(content) if schema is not None else None
    if isinstance(value, dict) and json.dumps(value) == content:
        pieces = [("{", None)]
        for i, (key, item) in enumerate(value.items()):
            bounds = _grade_bounds(schema or {}, key) if type(item) is int else None
            pieces.append((f"{', ' if i else ''}{json.dumps(key)}: ", None))
            pieces.append((json.dumps(item), bounds))
        pieces.append(("}", None))
    tokens: list[dict[str, Any]] = []
    for text, bounds in pieces:
        if bounds is not None:
            tokens.append(_grade_token(int(text), bounds, top))
        else:
            tokens.extend(_certain(t, top) for t in _TOKEN.findall(text))
    return {"content": tokens, "refusal": None}


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _certain(token: str, top: int) -> dict[str, Any]:
    return {**_entry(token, 0.0), "top_logprobs": [_entry(token, 0.0)][:top]}


def _grade_token(grade: int, bounds: tuple[int, int], top: int) -> dict[str, Any]:
    weights = {str(g): LOGPROB_DECAY ** abs(g - grade) for g in range(bounds[0], bounds[1] + 1)}
    scale = (1 - OTHER_TOKEN_P) / sum(weights.values())
    probabilities = {token: w * scale for token, w in weights.items()} | {'"': OTHER_TOKEN_P}
    ranked = sorted(probabilities.items(), key=lambda pair: -pair[1])
    return {
        **_entry(str(grade), math.log(probabilities[str(grade)])),
        "top_logprobs": [_entry(token, math.log(p)) for token, p in ranked[:top]],
    }


_OUTPUT_A = re.compile(r"<output_a>([^<]*)</output_a>")
_OUTPUT_B = re.compile(r"<output_b>([^<]*)</output_b>")


def pairwise_answer(prompt: str) -> str | None:
    """The simulated judge's preference for a pairwise prompt; None if ``prompt`` is not one.

    A pairwise prompt shows two outputs between ``<output_a>`` and ``<output_b>`` tags
    (escaped as ``<output>`` is). The answer, ``{"reasoning", "preference"}``, prefers
    the output that matches the ``<reference>`` and says ``tie`` when both or neither
    do; it is the same in either order, so this judge has no position bias.
    """
    outputs_a, outputs_b = _OUTPUT_A.findall(prompt), _OUTPUT_B.findall(prompt)
    if not outputs_a or not outputs_b:
        return None
    references = _REFERENCE.findall(prompt)
    reference = unescape(references[-1]) if references else None
    a_right = reference is not None and matches(reference, unescape(outputs_a[-1]))
    b_right = reference is not None and matches(reference, unescape(outputs_b[-1]))
    if a_right != b_right:
        preference = "A" if a_right else "B"
        reasoning = f"Answer {preference} agrees with the reference; the other does not."
    else:
        preference = "tie"
        reasoning = "Both answers agree with the reference." if a_right else "Neither is better."
    return json.dumps({"reasoning": reasoning, "preference": preference})
