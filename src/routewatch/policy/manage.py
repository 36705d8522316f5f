"""Policies by hand: show, pin, unpin and export, shared by the CLI and the daemon.

A pin replaces the automatic chain until it is removed; both are policy versions written
with their ``policy.changed`` event and publisher messages in one transaction, like the
automatic changes (``store.policies.reconcile``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from routewatch.config import Config, Policy
from routewatch.errors import UsageError
from routewatch.policy.engine import PolicyDecision, moves_traffic
from routewatch.policy.publishers import PolicyState, policy_json
from routewatch.store.policies import (
    Reconciled,
    StoredVersion,
    latest_version,
    reconcile,
    version_history,
)
from routewatch.store.queries import open_incidents_by_route


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyView:
    """A policy as ``policy show`` prints it."""

    name: str
    mode: str
    configured_chain: tuple[str, ...]
    active_chain: tuple[str, ...]
    pins: tuple[str, ...] | None
    version: int
    """0 until the first version is recorded (the first run of a route of its chain)."""
    history: tuple[StoredVersion, ...]


def policy_of(config: Config, name: str) -> Policy:
    """The configured policy ``name``; a usage error naming the known ones otherwise."""
    if name not in config.policies:
        known = ", ".join(sorted(config.policies)) or "none configured"
        raise UsageError(f"unknown policy {name!r}; known: {known}")
    return config.policies[name]


def show(engine: Engine, config: Config, names: Sequence[str] = ()) -> list[PolicyView]:
    """Configured and active chain, pins, version and recent history of each policy."""
    for name in names:
        policy_of(config, name)
    views = []
    for name, policy in config.policies.items():
        if names and name not in names:
            continue
        history = version_history(engine, name)
        latest = history[0] if history else None
        views.append(
            PolicyView(
                name=name,
                mode=policy.mode,
                configured_chain=tuple(policy.chain),
                active_chain=latest.chain if latest else tuple(policy.chain),
                pins=latest.pins if latest else None,
                version=latest.version if latest else 0,
                history=tuple(history),
            )
        )
    return views


def pin(
    engine: Engine,
    config: Config,
    name: str,
    routes: Sequence[str],
    *,
    actor: str = "cli",
    now: datetime | None = None,
) -> Reconciled:
    """Pin ``name``'s active chain to ``routes`` (configured routes, in order, no repeats)."""
    policy = check_pin(config, name, routes)

    def write() -> Reconciled:
        with engine.begin() as conn:
            return reconcile(
                conn,
                name=name,
                policy=policy,
                alert_targets=config.alerts.targets(),
                now=now or datetime.now(UTC),
                actor=actor,
                reason=f"pinned by hand ({actor}) to {' → '.join(routes)}",
                pins=list(routes),
            )

    return _retrying(write)


def check_pin(config: Config, name: str, routes: Sequence[str]) -> Policy:
    """The policy ``name``, if ``routes`` can be its pinned chain; a usage error otherwise."""
    policy = policy_of(config, name)
    if not routes:
        raise UsageError("pin needs at least one route")
    unknown = [r for r in routes if r not in config.routes]
    if unknown:
        raise UsageError(
            f"unknown route(s) {', '.join(unknown)}; known: {', '.join(sorted(config.routes))}"
        )
    twice = sorted({r for r in routes if routes.count(r) > 1})
    if twice:
        raise UsageError(f"{', '.join(twice)} appears twice in the pinned chain")
    return policy


def pin_warnings(
    engine: Engine, routes: Sequence[str], *, policy: str = "", chain: Sequence[str] = ()
) -> list[str]:
    """A warning for each pinned route with open incidents: the pin outranks a demotion.

    And, given the policy's configured ``chain``, one for each pinned route outside it: a
    typo may pin another policy's route, sending this policy's traffic to its model.
    """
    pinned = list(dict.fromkeys(routes))
    outside = [r for r in pinned if chain and r not in chain]
    # Latency and cost incidents never take a route out of the chain: no news in a pin.
    found = {
        route: [i for i in incidents if moves_traffic(i.metric)]
        for route, incidents in open_incidents_by_route(engine, pinned).items()
    }
    return [
        f"{route} is not in policy {policy}'s configured chain ({' → '.join(chain)}); "
        "pinned all the same"
        for route in outside
    ] + [
        f"{route} has open incident(s) ({', '.join(f'#{i.id} {i.metric}' for i in found[route])}); "
        "the pin keeps it in the chain until `unpin`"
        for route in pinned  # in the pin's order
        if found.get(route)
    ]


WRITE_ATTEMPTS = 3
"""Tries at writing a version when another writer took its number first."""


def _retrying(write: Callable[[], Reconciled]) -> Reconciled:
    """``write()``, again on a version-number clash with a concurrent change."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            return write()
        except IntegrityError:
            if attempt == WRITE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def unpin(
    engine: Engine, config: Config, name: str, *, actor: str = "cli", now: datetime | None = None
) -> Reconciled:
    """Return ``name`` to its automatic chain; nothing happens when it is not pinned."""
    policy = policy_of(config, name)

    def write() -> Reconciled:
        with engine.begin() as conn:
            latest = latest_version(conn, name)
            if latest is None or latest.pins is None:
                return Reconciled(
                    policy=name,
                    before=latest.chain if latest else tuple(policy.chain),
                    decision=PolicyDecision(chain=latest.chain if latest else tuple(policy.chain)),
                    version=None,
                )
            return reconcile(
                conn,
                name=name,
                policy=policy,
                alert_targets=config.alerts.targets(),
                now=now or datetime.now(UTC),
                actor=actor,
                reason=f"unpinned by hand ({actor}); the automatic chain applies",
                pins=None,
            )

    return _retrying(write)


def state(engine: Engine, config: Config, name: str) -> PolicyState:
    """The policy's active chain as publishers see it (the configured chain at version 0)."""
    policy_of(config, name)
    return state_of(config, name, stored(engine, name))


def stored(engine: Engine, name: str, version: int | None = None) -> StoredVersion | None:
    """The newest stored version of policy ``name`` (or its ``version``), if any."""
    with engine.connect() as conn:
        return latest_version(conn, name, version=version)


def state_of(config: Config, name: str, latest: StoredVersion | None) -> PolicyState:
    """``latest`` as publishers see it; the configured chain when it is None."""
    policy = policy_of(config, name)
    return PolicyState(
        policy=name,
        version=latest.version if latest else 0,
        updated_at=latest.created_at if latest else datetime.now(UTC),
        chain=latest.chain if latest else tuple(policy.chain),
        configured_chain=tuple(policy.chain),
        demoted=latest.demoted if latest else (),
        models={r: route.model for r, route in config.routes.items()},
    )


def export(engine: Engine, config: Config, name: str, fmt: str) -> str:
    """The active chain as the policy JSON file, or as a LiteLLM ``router_settings`` block."""
    current = state(engine, config, name)
    if fmt == "json":
        return json.dumps(policy_json(current), indent=2)
    if fmt == "litellm":
        models = list(dict.fromkeys(current.models[r] for r in current.chain))
        publishers = [p for p in config.policies[name].publish if p.type == "litellm"]
        group = (publishers[0].group if publishers else None) or name
        router: dict[str, Any] = {"fallbacks": [{models[0]: models[1:]}]}
        if group != models[0]:  # as the publisher: the head's own name needs no alias
            router["model_group_alias"] = {group: models[0]}
        block = {"router_settings": router}
        return yaml.safe_dump(block, sort_keys=False, allow_unicode=True).rstrip()
    raise UsageError(f"unknown format {fmt!r}; use json or litellm")
