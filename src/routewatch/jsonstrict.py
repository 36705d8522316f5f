"""JSON that names a key twice is an error, not "the last one wins".

``json.loads`` keeps the last of two equal keys and other parsers keep the first, so a
body or an eval-set line with both means different things to different readers.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """An object in the JSON names ``key`` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} appears twice")
        self.key = key


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in items:
        if key in seen:
            raise DuplicateKeyError(key)
        seen[key] = value
    return seen


def loads(text: str | bytes) -> Any:
    """``json.loads``, refusing an object that names a key twice.

    Raises:
        DuplicateKeyError: an object names a key twice.
        json.JSONDecodeError: the text is not JSON.
    """
    return json.loads(text, object_pairs_hook=_pairs)
