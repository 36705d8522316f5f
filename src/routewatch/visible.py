"""PURE: untrusted text shown as the characters it holds, not as what its controls do.

A model's output, an eval item or a judge's reasoning may hold bidi overrides (U+202E
before ``gnp.exe`` makes it read "exe.png") or terminal controls. Escaping HTML is not
enough: shown in the report or in Slack, they would make the evidence read differently
from what the model produced. Each is written as a backslash, ``u`` and its four hex
digits instead, as in a Python or JSON string.
"""

from __future__ import annotations

import re

_HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\U000e0000-\U000e007f]"
)
"""Control characters but tab, newline and carriage return; bidi embeddings, overrides and
isolates; tag characters (invisible text). Not the bidi marks (U+200E, U+200F, U+061C),
which ordinary right-to-left text uses and which reorder nothing on their own."""


def visible(text: str) -> str:
    """``text`` with each control and bidi character written as its escape (``u202e``)."""
    return _HIDDEN.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
