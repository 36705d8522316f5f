"""``routewatch sim serve``: the built-in simulated OpenAI-compatible provider, in the foreground.

Loads the scenario and eval sets, binds the port, prints the base URL and serves until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import click
import uvicorn

from routewatch.evalset import load_eval_dir
from routewatch.sim.app import create_app
from routewatch.sim.scenario import eval_dir_for, load_scenario
from routewatch.sim.server import listen


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
def sim() -> None:
    """The built-in simulated OpenAI-compatible provider (no keys, no network)."""


@sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8788, show_default=True, help="Port; 0 picks one.")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Scenario file (YAML); without it every model answers well and fast.",
)
@click.option(
    "--evals",
    "evals_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Eval sets to recognise; default: the scenario's eval_dir, else ./evals if present.",
)
def serve(host: str, port: int, scenario_path: Path | None, evals_dir: Path | None) -> None:
    """Serve the simulator in the foreground until Ctrl-C.

    Prints the base URL (http://HOST:PORT/v1) to use as a provider's base_url.
    The /admin endpoints have no authentication: keep the simulator on loopback.
    """
    scenario = load_scenario(scenario_path)
    directory = eval_dir_for(scenario, evals_dir, Path.cwd())
    eval_sets = load_eval_dir(directory) if directory is not None else {}
    app = create_app(scenario, eval_sets)
    listener = listen(host, port)  # a ListenError, like the daemon's: exit 2
    bound = listener.getsockname()[1]
    items = sum(len(s.items) for s in eval_sets.values())
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"routewatch simulator on http://{shown}:{bound}/v1")
    click.echo(f"{len(eval_sets)} eval set(s), {items} item(s) recognised; Ctrl-C stops it")
    if not _is_loopback(host):
        click.echo(
            f"warning: listening on {host}: the simulator has no authentication, so anyone "
            "who can reach it can change its scenario through /admin",
            err=True,
        )
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises it: stopping is a success here.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])
    click.echo("simulator stopped")
