"""Reading a judge's verdict: strict JSON first, then tolerant reading of JSON in text.

Pure. A verdict is a whole-number grade within the scale and a reasoning text; anything
else raises ``VerdictError`` so the caller can ask again, and finally store an error,
never a zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


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
    stripped = _unfence(text.strip())
    candidates: list[Any] = []
    try:
        candidates.append(json.loads(stripped))
    except (ValueError, RecursionError):
        candidates.extend(reversed(_json_objects(stripped)))
    for value in candidates:
        if isinstance(value, dict) and "score" in value:
            return _checked(value["score"], value.get("reasoning", ""), scale)
    found = SCORE_PATTERN.findall(stripped)
    if found:
        return _checked(found[-1], stripped, scale)
    raise VerdictError(f"no verdict in the judge's reply: {_excerpt(text)!r}")


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


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 120 else flat[:117] + "..."
