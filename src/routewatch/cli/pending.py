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


report = click.Command(
    "report",
    callback=_not_built("report"),
    help="(not built yet) Write the weekly HTML report.",
    params=[
        config_param(),
        click.Option(["--week"], help="ISO week, e.g. 2026-W47."),
        click.Option(["--since"], help="First day (YYYY-MM-DD)."),
        click.Option(["--until"], help="Last day (YYYY-MM-DD)."),
        click.Option(["-o", "--output"], help="Output file."),
    ],
)
serve = click.Command(
    "serve",
    callback=_not_built("serve"),
    help="(not built yet) Run the daemon: schedules and the HTTP server.",
    params=[config_param()],
)
policy = click.Group("policy", help="(not built yet) Read and steer fallback policies by hand.")
for _name, _help in (
    ("show", "Configured chain, active chain, pins and history."),
    ("pin", "Pin a policy's chain to the given routes."),
    ("unpin", "Return a policy to its automatic chain."),
    ("export", "Print the active chain (--format json|litellm)."),
):
    _params: list[click.Parameter] = [config_param()]
    if _name != "show":
        _params.append(click.Argument(["name"]))
    if _name == "pin":
        _params.append(click.Argument(["routes"], nargs=-1, required=True))
    if _name == "export":
        _params.append(click.Option(["--format"], type=click.Choice(["json", "litellm"])))
    policy.add_command(
        click.Command(_name, callback=_not_built(f"policy {_name}"), help=_help, params=_params)
    )

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

COMMANDS: list[click.Command] = [report, policy, judge, serve]
