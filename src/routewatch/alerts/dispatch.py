"""The outbox dispatcher: delivers pending messages to Slack, webhooks and publishers.

Each pass claims the due messages (a lease, so two dispatchers never send one message at
once and a dispatcher that dies mid-delivery only delays it), sends each, logs the
attempt and either marks it delivered or schedules the next try with exponential backoff
and jitter; a message older than ``alerts.delivery.give_up_hours`` is marked dead. A
receiver that is down for hours therefore gets every event once it is back, each with its
own stable ``X-Routewatch-Delivery`` id. ``routewatch run`` drains the outbox for a bounded
time before it exits; the daemon runs passes continuously.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from routewatch.alerts.slack import send_slack
from routewatch.alerts.slack_blocks import slack_message
from routewatch.alerts.webhook import SendResult, send_webhook
from routewatch.config import Config, Publisher, secret
from routewatch.errors import RoutewatchError
from routewatch.policy.publishers import PolicyState, PublishError, describe, publish
from routewatch.store.outbox import (
    Backlog,
    Message,
    backlog,
    backoff_s,
    claim_due,
    enqueue,
    extend_lease,
)
from routewatch.store.outbox import record_attempt as _record
from routewatch.store.policies import PUBLISH_EVENT, latest_version

log = logging.getLogger("routewatch.alerts")

PUBLISH_ROUNDS = 3
"""Publishes of one message at most, when newer versions keep arriving meanwhile."""
PUBLISH_ALERT_AFTER = 3
"""Failed attempts of a publisher after which people are told (once) that it is failing."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class DispatchReport:
    """What passes of the dispatcher did."""

    delivered: int = 0
    failed: int = 0
    """Attempts that failed and will be retried."""
    dead: int = 0
    backlog: Backlog | None = None
    errors: list[str] = field(default_factory=list)
    failed_targets: set[str] = field(default_factory=set)
    """Targets an attempt of these passes failed for (delivered or not since)."""
    delivered_targets: set[str] = field(default_factory=set)


class Dispatcher:
    """Delivers outbox messages for one configuration.

    Args:
        engine: The database holding the outbox.
        config: Alert targets, policies and delivery settings.
        env: Where secrets are read from, at the moment they are needed.
        now: The clock (wall time: deliveries happen in real time, also during backfills).
        rng: Jitter source.
    """

    def __init__(
        self,
        engine: Engine,
        config: Config,
        env: Mapping[str, str],
        *,
        now: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.env = env
        self.now = now
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        settings = config.alerts.delivery
        # Longer than one send can take (Slack: two tries with a pause; a 429 wait).
        self.lease_s = max(60.0, 3 * settings.timeout_s + 30)

    def deliver_due(
        self,
        report: DispatchReport | None = None,
        *,
        deadline: float | None = None,
        targets: Collection[str] | None = None,
    ) -> DispatchReport:
        """One pass: deliver the messages due now, one claim at a time.

        Args:
            report: Counts to add to.
            deadline: ``time.monotonic()`` after which no further message is claimed (the
                one being sent finishes: its own time limit bounds the overrun).
            targets: Only these targets' messages (all when None).
        """
        report = report or DispatchReport()
        started = self.now()
        # A target that failed in this pass is not tried again in it: a receiver timing
        # out would otherwise cost timeout_s per message it has queued, and the other
        # targets' messages (Slack's, behind a hanging webhook's) would wait behind them.
        failing: set[str] = set()
        while deadline is None or time.monotonic() < deadline:
            # One at a time: a lease covers one send, never a queue behind slow ones.
            messages = claim_due(
                self.engine,
                now=self.now(),
                due_by=started,
                lease_s=self.lease_s,
                limit=1,
                skip_targets=failing,
                only_targets=targets,
            )
            if not messages:
                break
            for message in messages:
                if not self._deliver(message, report):
                    failing.add(message.target)
        report.backlog = backlog(self.engine)
        return report

    def drain(
        self, wait_s: float, *, first: Collection[str] = (), report: DispatchReport | None = None
    ) -> DispatchReport:
        """Deliver until nothing is due within ``wait_s`` seconds from now, or that time ends.

        ``first``: targets delivered before any other (a policy's publishers after a
        change by hand, whose outcome decides the command's exit code).
        """
        deadline = time.monotonic() + wait_s
        report = report or DispatchReport()
        if first:
            self.deliver_due(report, deadline=deadline, targets=first)
        while True:
            self.deliver_due(report, deadline=deadline)
            pending = report.backlog
            if pending is None or pending.pending == 0 or pending.next_attempt_at is None:
                return report
            wait = (pending.next_attempt_at - self.now()).total_seconds()
            left = deadline - time.monotonic()
            if left <= 0 or wait > left:
                return report
            time.sleep(max(0.0, min(wait, left)) + 0.01)

    def _deliver(self, message: Message, report: DispatchReport) -> bool:
        """Send ``message`` once and record the attempt; whether it was delivered."""
        started = time.monotonic()
        try:
            result = self._send_holding_lease(message)
        except RoutewatchError as exc:
            result = SendResult(ok=False, error=str(exc))
        except Exception as exc:  # one bad message must not stop the others
            log.exception("delivering %s to %s raised", message.event, message.target)
            result = SendResult(ok=False, error=f"internal error: {type(exc).__name__}")
        duration_ms = (time.monotonic() - started) * 1000
        now = self.now()
        retry_at = None
        if not result.ok:
            settings = self.config.alerts.delivery
            give_up = message.created_at + timedelta(hours=settings.give_up_hours)
            wait = backoff_s(
                message.attempts,
                initial_s=settings.backoff_initial_s,
                max_s=settings.backoff_max_s,
                rng=self.rng,
            )
            left = (give_up - now).total_seconds()
            if result.retry_after_s is not None:
                # The receiver's own wait, when longer (Slack requires it be honoured);
                # past the give-up time, one last try then.
                wait = max(wait, min(result.retry_after_s, left))
            if wait <= left:
                retry_at = now + timedelta(seconds=wait)
        status = _record(
            self.engine,
            message,
            ok=result.ok,
            status_code=result.status_code,
            error=result.error,
            duration_ms=duration_ms,
            now=now,
            retry_at=retry_at,
        )
        if result.ok:
            report.delivered_targets.add(message.target)
            report.delivered += 1
            log.info("delivered %s to %s (%s)", message.event, message.target, message.delivery_id)
            return True
        report.errors.append(f"{message.target}: {result.error}")
        report.failed_targets.add(message.target)
        if status == "dead":
            report.dead += 1
            log.error(
                "gave up delivering %s to %s after %d attempts: %s",
                message.event,
                message.target,
                message.attempts,
                result.error,
            )
        else:
            report.failed += 1
            log.warning(
                "delivering %s to %s failed (attempt %d, next at %s): %s",
                message.event,
                message.target,
                message.attempts,
                retry_at.isoformat() if retry_at else "-",
                result.error,
            )
        if message.event == PUBLISH_EVENT and (
            message.attempts == PUBLISH_ALERT_AFTER or status == "dead"
        ):
            self._publish_failed(message, result.error or "failed")
        return False

    def _send_holding_lease(self, message: Message) -> SendResult:
        """``_send``, renewing the message's lease while it lasts.

        A receiver that answers slowly (a body sent byte by byte, a Slack attempt and its
        retry) may hold an attempt past the lease: another dispatcher would then claim the
        message and send it a second time while the first send is still going.
        """
        done = threading.Event()
        # A webhook's attempt ends within timeout_s; Slack's (urllib, a retry) and a
        # publisher's file write have no hard end. A send stuck past twice the lease is
        # let go, so another dispatcher can take the message over.
        give_up = time.monotonic() + 2 * self.lease_s

        def renew() -> None:
            while not done.wait(self.lease_s / 3) and time.monotonic() < give_up:
                try:
                    until = self.now() + timedelta(seconds=self.lease_s)
                    if not extend_lease(self.engine, message, until):
                        return  # settled, or taken over after all
                except Exception:  # the send goes on; the lease may then run out
                    log.warning("renewing the lease of outbox message %d failed", message.id)

        keeper = threading.Thread(target=renew, name="routewatch-lease", daemon=True)
        keeper.start()
        try:
            return self._send(message)
        finally:
            done.set()
            keeper.join()

    def _send(self, message: Message) -> SendResult:
        kind, _, rest = message.target.partition(":")
        if kind == "publish":
            return self._publish(rest)
        return send_alert(
            self.config, self.env, message.target, message.payload, delivery_id=message.delivery_id
        )

    def _publish(self, rest: str) -> SendResult:
        name, _, key = rest.rpartition(":")
        publisher = self._publisher(name, key)
        if publisher is None:
            return SendResult(ok=False, error=f"publisher {rest} is no longer configured")
        written = -1
        # Always the newest version, so an older message delivered late never rolls a chain
        # back; and again if a newer one was written meanwhile (two dispatchers at once).
        for _ in range(PUBLISH_ROUNDS):
            with self.engine.connect() as conn:
                stored = latest_version(conn, name)
            if stored is None:
                return SendResult(ok=False, error=f"policy {name} has no version yet")
            if stored.version == written:
                break
            try:
                state = PolicyState(
                    policy=name,
                    version=stored.version,
                    updated_at=stored.created_at,
                    chain=stored.chain,
                    configured_chain=tuple(self.config.policies[name].chain),
                    demoted=stored.demoted,
                    models={r: route.model for r, route in self.config.routes.items()},
                )
                publish(
                    publisher, state, env=self.env, timeout_s=self.config.alerts.delivery.timeout_s
                )
            except PublishError as exc:  # names the publisher already
                return SendResult(ok=False, error=str(exc))
            except (RoutewatchError, ValueError) as exc:
                return SendResult(ok=False, error=f"{describe(publisher)}: {exc}")
            written = stored.version
        return SendResult(ok=True)

    def _publisher(self, policy_name: str, key: str) -> Publisher | None:
        """The publisher of ``policy_name`` filed under ``key``, if still configured."""
        policy = self.config.policies.get(policy_name)
        if policy is None:
            return None
        return next((p for p in policy.publish if p.key == key), None)

    def _publish_failed(self, message: Message, error: str) -> None:
        name, _, key = message.target.removeprefix("publish:").rpartition(":")
        publisher = self._publisher(name, key)
        label = describe(publisher) if publisher is not None else message.target
        now = self.now()
        body = {
            "event": "policy.publish_failed",
            "id": str(uuid.uuid4()),
            "at": now.isoformat(),
            "route": None,
            "eval_set": None,
            "policy": name,
            "version": message.payload.get("version"),
            "publisher": label,
            "error": error[:300],
            "attempts": message.attempts,
        }
        with self.engine.begin() as conn:
            enqueue(conn, body, self.config.alerts.targets(), now)


def send_alert(
    config: Config,
    env: Mapping[str, str],
    target: str,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
) -> SendResult:
    """Send one event to one alert target (``slack`` or ``webhook:<key>``), once.

    Raises:
        MissingSecretError: the Slack URL's or the webhook secret's variable is not set.
    """
    kind, _, rest = target.partition(":")
    settings = config.alerts.delivery
    if kind == "slack":
        slack = config.alerts.slack
        if slack is None:
            return SendResult(ok=False, error="Slack is no longer configured")
        url = secret(slack.webhook_url_env, env, needed_for="Slack alerts")
        sent = send_slack(
            url, slack_message(payload), timeout_s=settings.timeout_s, delivery_id=delivery_id
        )
        return SendResult(
            ok=sent.ok,
            status_code=sent.status_code,
            error=sent.error,
            retry_after_s=sent.retry_after_s,
        )
    if kind == "webhook":
        hook = next((h for h in config.alerts.webhooks if h.key == rest), None)
        if hook is None:
            return SendResult(ok=False, error=f"webhook {rest} is no longer configured")
        key = (
            secret(hook.secret_env, env, needed_for="signing webhooks") if hook.secret_env else None
        )
        return send_webhook(
            hook.url, payload, delivery_id=delivery_id, secret=key, timeout_s=settings.timeout_s
        )
    return SendResult(ok=False, error=f"unknown target {target!r}")
