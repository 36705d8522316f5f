"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG_DECLS = ["-c", "--config", "config_path"]
_CONFIG_ATTRS: dict[str, Any] = {
    "type": click.Path(path_type=Path, dir_okay=False),
    "default": Path("routewatch.yaml"),
    "show_default": True,
    "help": "The routewatch.yaml to use; relative paths in it resolve against its folder.",
}


def config_param() -> click.Option:
    """The ``-c/--config FILE`` option as a parameter object."""
    return click.Option(_CONFIG_DECLS, **_CONFIG_ATTRS)


def config_option(f: F) -> F:
    """Decorator adding ``-c/--config FILE`` (as ``config_path``) to a command."""
    return click.option(*_CONFIG_DECLS, **_CONFIG_ATTRS)(f)


routes_option = click.option(
    "--route",
    "routes",
    multiple=True,
    metavar="NAME",
    help="Only this route (repeatable); default: every route.",
)
"""Decorator adding ``--route NAME`` (repeatable, as ``routes``) to a command."""
