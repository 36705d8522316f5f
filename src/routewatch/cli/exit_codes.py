"""The process exit codes: part of the public contract."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; part of the public contract."""

    ok = 0
    bad_input = 1
    failure = 2
    regression = 3
