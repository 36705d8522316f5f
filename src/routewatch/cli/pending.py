"""Commands of the design that this version does not implement yet.

Each declares its arguments as the design specifies, so ``--help`` is the real
interface, and exits 2 with a message saying it is not built: it never pretends.
"""

from __future__ import annotations

from typing import Any

import click

from routewatch.cli.options import config_param
from routewatch.errors import NotBuiltError


def _not_built(name: str) -> Any:
    def callback(**_: Any) -> None:
        raise NotBuiltError(name)

    return callback


judge = click.Group("judge", help="(not built yet) The judge's own quality.")
judge.add_command(
    click.Command(
        "agreement",
        callback=_not_built("judge agreement"),
        help="The judge's agreement with human labels.",
        params=[
            config_param(),
            click.Option(["--eval-set"], help="Only this eval set."),
        ],
    )
)

COMMANDS: list[click.Command] = [judge]
