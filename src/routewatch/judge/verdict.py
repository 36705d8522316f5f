"""Reading a judge's verdict: strict JSON first, then tolerant reading of JSON in text.

Pure. A verdict is a whole-number grade within the scale and a reasoning text; anything
else raises ``VerdictError`` so the caller can ask again, and finally store an error,
never a zero. ``weighted_grade`` reads the verdict's grade token in the reply's
``logprobs`` for the probability-weighted (G-Eval) grade, or says why it cannot.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class VerdictError(ValueError):
    """The judge's reply holds no usable verdict."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A judge's grade on the set's scale, and why."""

    score: int
    reasoning: str

    def normalised(self, scale: tuple[int, int]) -> float:
        """The grade mapped to 0..1."""
        lo, hi = scale
        return (self.score - lo) / (hi - lo)


SCORE_PATTERN = re.compile(r"\bscore\b\W{0,5}(-?\d+(?:\.\d+)?)", re.IGNORECASE)
"""A ``score: 4`` or ``"score": 4`` written outside any parsable JSON; the last one counts,
since judges that reason first state their grade at the end."""


def parse_verdict(text: str, scale: tuple[int, int]) -> Verdict:
    """The verdict in a judge's reply.

    Tries the whole reply as JSON (also inside a fenced block), then the last JSON object
    in the text that has a ``score``, then the last ``score: N``.

    Raises:
        VerdictError: no grade, a grade that is not a whole number, or one off the scale.
    """
    stripped, candidates = reply_values(text)
    for value in candidates:
        if isinstance(value, dict) and "score" in value:
            return _checked(value["score"], value.get("reasoning", ""), scale)
    found = SCORE_PATTERN.findall(stripped)
    if found:
        return _checked(found[-1], stripped, scale)
    raise VerdictError(f"no verdict in the judge's reply: {excerpt(text)!r}")


def reply_values(text: str) -> tuple[str, list[Any]]:
    """A judge's reply without its code fence, and the JSON values in it, best first.

    The whole reply parsed as JSON when it is; otherwise every JSON object found in the
    text, the last first (judges that reason first answer at the end).
    """
    stripped = _unfence(text.strip())
    try:
        return stripped, [json.loads(stripped)]
    except (ValueError, RecursionError):
        return stripped, list(reversed(_json_objects(stripped)))


def _checked(score: Any, reasoning: Any, scale: tuple[int, int]) -> Verdict:
    lo, hi = scale
    try:
        number = float(score)
    except (TypeError, ValueError):
        raise VerdictError(f"score {score!r} is not a number") from None
    if isinstance(score, bool) or not number.is_integer():
        raise VerdictError(f"score {score!r} is not a whole number")
    if not lo <= number <= hi:
        raise VerdictError(f"score {score!r} is outside the scale [{lo}, {hi}]")
    return Verdict(score=int(number), reasoning=str(reasoning)[:2000])


def _unfence(text: str) -> str:
    match = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", text, flags=re.DOTALL)
    return match.group(1).strip() if match else text


def _json_objects(text: str) -> list[Any]:
    """Every JSON object that can be decoded starting at a ``{`` in ``text``."""
    decoder = json.JSONDecoder()
    found = []
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        found.append(value)
    return found


def excerpt(text: str) -> str:
    """``text`` on one line, cut to 120 characters, for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 120 else flat[:117] + "..."


def normalised(grade: float, scale: tuple[int, int]) -> float:
    """A grade, whole or weighted, mapped to 0..1."""
    lo, hi = scale
    return (grade - lo) / (hi - lo)


class _Logprobs(BaseModel):
    # Providers add fields (``bytes``, ``refusal``): only these are read.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class TopLogprob(_Logprobs):
    """One alternative for a token position."""

    token: str
    """The alternative token's text."""
    logprob: float = Field(le=1e-6)
    """Its natural log probability (rounding may give a hair above 0)."""


class TokenLogprob(TopLogprob):
    """One token of the reply, with its most likely alternatives."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)
    """The likeliest tokens at this position, the sampled one usually among them."""


class ChoiceLogprobs(_Logprobs):
    """``choices[0].logprobs`` of an OpenAI chat completion."""

    content: list[TokenLogprob] | None = None
    """The reply's tokens, in order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedGrade:
    """A verdict's grade weighted by its token's probabilities, or its integer and why."""

    grade: float
    """The expected grade over the valid grades among ``top_logprobs``, renormalised;
    the verdict's own integer grade when ``fallback`` says why it could not be taken."""
    fallback: str | None
    mass: float | None = None
    """The probability the top alternatives put on valid grades (before renormalising)."""


GRADE_KEY = re.compile(r'"score"\s*:\s*(?=-?\d)')
"""Where the grade starts in a JSON verdict. A ``"score":`` quoted inside the reasoning
string is escaped (``\\"score\\":``), so it never matches."""
_WHOLE = re.compile(r"-?\d+")


def weighted_grade(logprobs: object, verdict: Verdict, scale: tuple[int, int]) -> WeightedGrade:
    """The probability-weighted grade of ``verdict``, from the reply's ``logprobs``.

    The grade token is the one after the last ``"score":`` (else the last ``score: N``)
    whose number is the verdict's grade. Its ``top_logprobs`` that are whole grades
    within ``scale`` give ``sum(p_i * grade_i) / sum(p_i)``. Anything missing or of
    another shape gives the verdict's integer grade and a ``fallback`` reason: a
    provider's logprobs never stop a verdict from counting.
    """
    integer = float(verdict.score)
    if logprobs is None:
        return WeightedGrade(grade=integer, fallback="the reply carried no logprobs")
    try:
        tokens = ChoiceLogprobs.model_validate(logprobs).content
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "logprobs"
        return WeightedGrade(
            grade=integer, fallback=f"logprobs of an unexpected shape: {where}: {first['msg']}"
        )
    if not tokens:
        return WeightedGrade(grade=integer, fallback="the reply's logprobs list no tokens")
    token = _grade_token(tokens, verdict.score)
    if token is None:
        return WeightedGrade(
            grade=integer, fallback=f"no token of its own carries the grade {verdict.score}"
        )
    if not token.top_logprobs:
        return WeightedGrade(
            grade=integer, fallback="the grade token has no top_logprobs to weigh it by"
        )
    lo, hi = scale
    weights: dict[int, float] = {}
    seen: set[str] = set()
    for alternative in (*token.top_logprobs, token):
        if alternative.token in seen:
            continue  # the sampled token is usually among its own alternatives
        seen.add(alternative.token)
        text = alternative.token.strip()
        if _WHOLE.fullmatch(text) and lo <= int(text) <= hi:
            weights[int(text)] = weights.get(int(text), 0.0) + math.exp(alternative.logprob)
    mass = sum(weights.values())
    if mass <= 0.0:
        return WeightedGrade(grade=integer, fallback="no probability on any grade of the scale")
    expected = sum(g * w for g, w in weights.items()) / mass
    return WeightedGrade(grade=expected, fallback=None, mass=min(mass, 1.0))


def _grade_token(tokens: Sequence[TokenLogprob], grade: int) -> TokenLogprob | None:
    """The token that holds ``grade``, as written after a score key, and nothing else."""
    text = "".join(t.token for t in tokens)
    starts = list(itertools.accumulate((len(t.token) for t in tokens[:-1]), initial=0))
    keyed = [m.end() for m in GRADE_KEY.finditer(text)]
    loose = [m.start(1) for m in SCORE_PATTERN.finditer(text)]
    for position in [*reversed(keyed), *reversed(loose)]:
        number = _WHOLE.match(text, position)
        if number is None or int(number.group()) != grade or text[number.end() :][:1] == ".":
            continue
        token = tokens[bisect.bisect_right(starts, position) - 1]
        if token.token.strip() == number.group():
            return token
    return None
