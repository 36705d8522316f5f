"""Commands of the design that this version does not implement yet.

Each declares its arguments as the design specifies, so ``--help`` is the real
interface, and exits 2 with a message saying it is not built: it never pretends.
Every command of the design is built today, so the list is empty.
"""

from __future__ import annotations

from typing import Any

import click

from routewatch.errors import NotBuiltError


def not_built(name: str) -> Any:
    """A command callback that raises ``NotBuiltError`` for ``routewatch NAME``."""

    def callback(**_: Any) -> None:
        raise NotBuiltError(name)

    return callback


COMMANDS: list[click.Command] = []
