"""``routewatch alerts test``: send a test event to every alert target, now.

Past the outbox: nothing is stored or retried, so a wrong Slack URL or webhook secret
shows up at once, not in the first real incident's delivery log.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click

from routewatch.cli.exit_codes import ExitCode
from routewatch.cli.options import config_option
from routewatch.config import Config, load_config
from routewatch.errors import RoutewatchError, UsageError

TEST_EVENT = "alert.test"


@click.group("alerts")
def alerts() -> None:
    """Check alert delivery: send a test event to every target."""


@alerts.command("test")
@config_option
def test_command(config_path: Path) -> int:
    """Send an `alert.test` event to Slack and every webhook now; say how each answered.

    One line per target, on standard output. Each is sent once, past the outbox
    (Slack's client makes its one quick retry after a connection error or a 5xx).

    Exit 2 when a target did not take it. Nothing is stored or retried later: the
    database is not opened.
    """
    from routewatch.alerts.dispatch import send_alert

    env = dict(os.environ)
    config = load_config(config_path, env)
    targets = config.alerts.targets()
    if not targets:
        raise UsageError("no alert target is configured (alerts.slack, alerts.webhooks)")
    now = datetime.now(UTC)
    payload = {
        "event": TEST_EVENT,
        "id": str(uuid.uuid4()),
        "at": now.isoformat(),
        "route": None,
        "eval_set": None,
        "message": "A test of routewatch's alert delivery (routewatch alerts test); "
        "nothing is wrong.",
    }
    failed = 0
    for target in targets:
        try:
            result = send_alert(config, env, target, payload, delivery_id=str(uuid.uuid4()))
        except RoutewatchError as exc:  # its secret's variable is not set
            failed += 1
            click.echo(f"{_label(config, target)}: not sent: {exc}")
            continue
        if result.ok:
            click.echo(f"{_label(config, target)}: delivered (HTTP {result.status_code})")
        else:
            failed += 1
            click.echo(f"{_label(config, target)}: failed: {result.error}")
    return ExitCode.failure if failed else ExitCode.ok


def _label(config: Config, target: str) -> str:
    """``slack`` or ``webhook NAME (https://host/path)``: never a secret of the URL."""
    kind, _, key = target.partition(":")
    if kind == "slack":
        return "slack"
    hook = next((h for h in config.alerts.webhooks if h.key == key), None)
    return f"webhook {key}" + (f" ({_shown(hook.url)})" if hook is not None else "")


def _shown(url: str) -> str:
    """``url``'s scheme, host and port: its path, query and user info may hold a token."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port out of range: the send says what is wrong
        return "an invalid URL"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
