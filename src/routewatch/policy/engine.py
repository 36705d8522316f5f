"""The policy decision, pure: a configured chain and the routes' troubles in, a chain out.

In ``auto`` mode an open quality or error incident on a route demotes it: the active
chain drops it and keeps the order of the rest; it comes back once its incidents have
resolved. The chain is never empty: when every route is in trouble the least bad one (the
smallest relative drop, then the configured order) stays, and the decision says so, for
a critical event. Pins set by hand override all of it until unpinned. Latency and cost
incidents are alerts only: they never move traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from routewatch.detect.findings import Metric

TRAFFIC_METRICS = (Metric.score, Metric.error_rate)
"""Metrics whose incidents move traffic; ``critical:<item>`` findings count as quality."""


def moves_traffic(metric: str) -> bool:
    """Whether an open incident on ``metric`` demotes its route in ``auto`` mode."""
    return metric in TRAFFIC_METRICS or metric.startswith("critical:")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trouble:
    """An open incident on a route that moves traffic."""

    route: str
    incident_id: int
    metric: str
    since: datetime
    drop: float = 0.0
    """How bad it is, relative: ``(baseline - observed) / baseline`` for quality, the rise
    over the baseline for the error rate; ranks routes when every one is in trouble."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Demotion:
    """A route left out of the active chain, and why."""

    route: str
    since: datetime
    reason: str
    incident_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecision:
    """The active chain a policy should have now."""

    chain: tuple[str, ...]
    demoted: tuple[Demotion, ...] = ()
    pins: tuple[str, ...] | None = None
    all_degraded: bool = False
    """Every configured route is in trouble; ``kept`` stays in the chain regardless."""
    kept: str | None = None

    def same_as(
        self, chain: Sequence[str], demoted: Sequence[str], pins: Sequence[str] | None
    ) -> bool:
        """Whether this decision equals a stored version (chain, demoted routes, pins)."""
        mine = None if self.pins is None else list(self.pins)
        theirs = None if pins is None else list(pins)
        return (
            list(self.chain) == list(chain)
            and sorted(d.route for d in self.demoted) == sorted(demoted)
            and mine == theirs
        )


def decide_chain(
    configured: Sequence[str],
    troubles: Sequence[Trouble],
    *,
    auto: bool,
    pins: Sequence[str] | None = None,
) -> PolicyDecision:
    """The active chain for ``configured`` given the open ``troubles`` of its routes.

    Args:
        configured: The chain from the config, most preferred first (not empty).
        troubles: Open incidents; those of routes outside the chain, and metrics that
            do not move traffic, are ignored.
        auto: ``auto`` mode; in ``suggest`` mode nothing is demoted.
        pins: Routes pinned by hand, which replace the chain until unpinned.
    """
    if not configured:
        raise ValueError("a policy chain cannot be empty")
    if pins:
        return PolicyDecision(chain=tuple(pins), pins=tuple(pins))
    if not auto:
        return PolicyDecision(chain=tuple(configured))
    first: dict[str, Trouble] = {}
    worst: dict[str, float] = {}
    for t in sorted(troubles, key=lambda t: (t.since, t.incident_id)):
        if t.route not in configured or not moves_traffic(t.metric):
            continue
        first.setdefault(t.route, t)
        worst[t.route] = max(worst.get(t.route, 0.0), t.drop)
    demoted = [
        Demotion(
            route=r,
            since=first[r].since,
            reason=_reason(first[r]),
            incident_id=first[r].incident_id,
        )
        for r in configured
        if r in first
    ]
    chain = tuple(r for r in configured if r not in first)
    if chain:
        return PolicyDecision(chain=chain, demoted=tuple(demoted))
    kept = min(configured, key=lambda r: (worst[r], configured.index(r)))
    return PolicyDecision(
        chain=(kept,),
        demoted=tuple(d for d in demoted if d.route != kept),
        all_degraded=True,
        kept=kept,
    )


def _reason(t: Trouble) -> str:
    return f"open incident #{t.incident_id} on {t.metric}"


def action_sentence(
    route: str, before: Sequence[str], decision: PolicyDecision, *, auto: bool
) -> str:
    """What a policy did, in words; in ``suggest`` mode, what it would have done.

    Args:
        route: The route whose run led to the decision; named first when it moved.
        before: The active chain before this decision.
        decision: The decision (in ``suggest`` mode: the one ``auto`` mode would take).
        auto: Whether the decision was applied.
    """
    after = " → ".join(decision.chain)
    if decision.pins is not None:
        return f"chain pinned by hand to {after}; nothing changed automatically"
    prefix = "" if auto else "suggest mode, nothing changed: would have "
    if decision.all_degraded:
        return (
            f"{prefix}kept {decision.kept} (least bad) as the only route: every route is degraded"
        )
    if list(before) == list(decision.chain):
        return f"no change; active chain {after}" if auto else "suggest mode: no change suggested"

    def first(names: list[str]) -> list[str]:
        return sorted(names, key=lambda r: r != route)

    dropped = first([r for r in before if r not in decision.chain])
    back = first([r for r in decision.chain if r not in before])
    parts = []
    if dropped:
        parts.append(f"demoted {', '.join(dropped)}")
    if back:
        parts.append(f"restored {', '.join(back)}")
    if not parts:
        parts.append("reordered the chain")
    return f"{prefix}{' and '.join(parts)}; active chain {after}"
