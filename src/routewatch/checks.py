"""PURE: an item's deterministic checks run against one output -> ``CheckResult``.

Sits between the runner (which has the output) and scoring (which averages the
results). A check never raises for any output text: a failure is a result with a
short ``detail`` a person can read in the report.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import regex
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from routewatch.evalset import Check, CheckKind

DETAIL_LIMIT = 200
"""Longest ``detail`` kept: enough for a schema error, short enough for a table cell."""

_QUOTE_LIMIT = 60
REGEX_TIMEOUT_S = 0.25
"""How long one ``regex`` check may search one output; typical patterns take microseconds."""
_FENCE = "```"
_NO_REFS = Registry()
"""An empty registry: ``$ref`` resolves inside the schema (and to the JSON Schema
metaschemas) only. jsonschema's default would fetch remote ``$ref`` URLs over HTTP,
which a pure module must never do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The verdict of one check on one output."""

    kind: CheckKind
    index: int
    """Position of the check in its item's ``checks``."""
    passed: bool
    detail: str
    """Why it failed, e.g. ``612 characters > 600``; empty when it passed."""

    @property
    def scorer(self) -> str:
        """The stable name stored with the score, e.g. ``check:contains:0``."""
        return f"check:{self.kind}:{self.index}"


def run_check(check: Check, output: str, *, index: int = 0) -> CheckResult:
    """Run one check on ``output``; never raises, whatever the output holds.

    Semantics per kind:

    - ``contains``/``not_contains``: case-sensitive substring.
    - ``icontains``: substring after ``str.casefold`` on both sides (``"STRASSE"``
      matches ``"straße"``).
    - ``regex``: a search anywhere in the output; anchor with ``^``/``$``. Python's
      syntax (the ``regex`` package, compatible with ``re``), given up after
      ``REGEX_TIMEOUT_S`` on one output: a pattern that backtracks without end on some
      text would otherwise hang the run (the check then fails, saying so).
    - ``equals``: equal after stripping surrounding whitespace from both.
    - ``max_chars``/``min_chars``: on ``len(output.strip())``, so a trailing newline
      does not count.
    - ``json_schema``: the stripped output parsed as JSON, or else the first fenced
      code block; validated with format checking off.

    Args:
        check: The check, as loaded from the eval set.
        output: The route's answer.
        index: Position of the check in its item, kept in ``CheckResult.scorer``.
    """
    failure = _RUNNERS[check.kind](check.arg, output)
    return CheckResult(
        kind=check.kind,
        index=index,
        passed=failure is None,
        detail=_clip(failure or "", DETAIL_LIMIT),
    )


def run_checks(checks: Sequence[Check], output: str) -> list[CheckResult]:
    """Run every check of an item on ``output``, in order."""
    return [run_check(check, output, index=i) for i, check in enumerate(checks)]


# Each runner returns None when the check passes, else the failure detail.
_Runner = Callable[[Any, str], str | None]


def _contains(arg: Any, output: str) -> str | None:
    return None if str(arg) in output else f"missing {_quote(str(arg))}"


def _not_contains(arg: Any, output: str) -> str | None:
    return None if str(arg) not in output else f"contains {_quote(str(arg))}"


def _icontains(arg: Any, output: str) -> str | None:
    if str(arg).casefold() in output.casefold():
        return None
    return f"missing {_quote(str(arg))} (ignoring case)"


def _regex(arg: Any, output: str) -> str | None:
    try:
        pattern = _compiled(str(arg))
    except regex.error as exc:
        return f"regex does not compile: {exc}"
    try:
        found = pattern.search(output, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return (
            f"regex {_pattern(str(arg))} gave up after {REGEX_TIMEOUT_S:g} s on this output "
            "(the pattern backtracks too much)"
        )
    return None if found else f"no match for {_pattern(str(arg))}"


def _equals(arg: Any, output: str) -> str | None:
    expected, got = str(arg).strip(), output.strip()
    return None if got == expected else f"expected {_quote(expected)}, got {_quote(got)}"


def _max_chars(arg: Any, output: str) -> str | None:
    n = len(output.strip())
    return None if n <= int(arg) else f"{n} characters > {arg}"


def _min_chars(arg: Any, output: str) -> str | None:
    n = len(output.strip())
    return None if n >= int(arg) else f"{n} characters < {arg}"


def _json_schema(arg: Any, output: str) -> str | None:
    found = _find_json(output)
    if isinstance(found, _NotJson):
        return found.detail
    try:
        validator = validator_for(arg)(arg, registry=_NO_REFS)
        error = best_match(validator.iter_errors(found.value))
    except Unresolvable as exc:
        return f"schema $ref cannot be resolved: {exc}"
    except RecursionError:
        return "JSON is nested too deeply to validate"
    if error is None:
        return None
    # jsonschema quotes the whole failing value; shorten it so the reason survives the clip.
    instance = repr(error.instance)
    message = error.message.replace(instance, _clip(instance, _QUOTE_LIMIT))
    where = f" at {error.json_path}" if error.path else ""
    return f"JSON does not match schema: {message}{where}"


_RUNNERS: dict[CheckKind, _Runner] = {
    CheckKind.contains: _contains,
    CheckKind.not_contains: _not_contains,
    CheckKind.icontains: _icontains,
    CheckKind.regex: _regex,
    CheckKind.equals: _equals,
    CheckKind.max_chars: _max_chars,
    CheckKind.min_chars: _min_chars,
    CheckKind.json_schema: _json_schema,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Json:
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class _NotJson:
    detail: str


def _find_json(output: str) -> _Json | _NotJson:
    """The whole stripped output as JSON, else the first fenced code block's content.

    JSON followed by prose, unfenced, does not parse: a client that calls
    ``json.loads`` on the answer would fail on it too.
    """
    text = output.strip()
    parsed = _parse(text)
    if isinstance(parsed, _Json):
        return parsed
    block = _first_fenced_block(output)
    if block is not None:
        in_block = _parse(block.strip())
        if isinstance(in_block, _NotJson):
            return _NotJson(detail=f"{in_block.detail} (in the code block)")
        return in_block
    # Text that does not even start like a JSON document is prose, not broken JSON.
    if not text.startswith(("{", "[")):
        return _NotJson(detail="no JSON found")
    return parsed


def _parse(text: str) -> _Json | _NotJson:
    try:
        return _Json(value=json.loads(text))
    except json.JSONDecodeError as exc:
        return _NotJson(detail=f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return _NotJson(detail="not JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        return _NotJson(detail=f"not JSON: {exc}")


def _first_fenced_block(output: str) -> str | None:
    """Content of the first ```` ```lang ... ``` ```` block; the info string is skipped."""
    start = output.find(_FENCE)
    if start < 0:
        return None
    body = output.find("\n", start + len(_FENCE))
    if body < 0:
        return None
    end = output.find(_FENCE, body + 1)
    if end < 0:
        return None
    return output[body + 1 : end]


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)


def _quote(text: str) -> str:
    return repr(_clip(text, _QUOTE_LIMIT))


def _pattern(text: str) -> str:
    """A regex as written, in backquotes; ``repr`` would double every backslash."""
    return f"`{_clip(text, _QUOTE_LIMIT)}`"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
