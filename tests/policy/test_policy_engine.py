"""The pure policy engine: configured chain and troubles in, active chain out."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routewatch.policy.engine import (
    Demotion,
    PolicyDecision,
    Trouble,
    action_sentence,
    decide_chain,
    moves_traffic,
)

AT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
CHAIN = ("a", "b", "c")
METRICS = ("score", "error_rate", "critical:refund-window", "p95_latency_ms", "cost_per_call_usd")


def trouble(
    route: str, incident_id: int = 1, metric: str = "score", *, hours: int = 0, drop: float = 0.1
) -> Trouble:
    return Trouble(
        route=route,
        incident_id=incident_id,
        metric=metric,
        since=AT + timedelta(hours=hours),
        drop=drop,
    )


def demoted_routes(decision: PolicyDecision) -> list[str]:
    return [d.route for d in decision.demoted]


def test_a_trouble_demotes_its_route_and_keeps_the_order_of_the_rest() -> None:
    decision = decide_chain(("a", "b", "c", "d"), [trouble("b", 7)], auto=True)

    assert decision == PolicyDecision(
        chain=("a", "c", "d"),
        demoted=(Demotion(route="b", since=AT, reason="open incident #7 on score", incident_id=7),),
    )


def test_demotions_follow_the_configured_order_not_the_incident_order() -> None:
    troubles = [trouble("c", 1, hours=0), trouble("a", 2, hours=5)]

    decision = decide_chain(CHAIN, troubles, auto=True)

    assert decision.chain == ("b",)
    assert demoted_routes(decision) == ["a", "c"]


def test_several_troubles_on_a_route_give_one_demotion_citing_the_earliest() -> None:
    troubles = [
        trouble("a", 5, "error_rate", hours=2),
        trouble("a", 8, "critical:q1", hours=1),
        trouble("a", 4, "score", hours=1),
    ]

    decision = decide_chain(CHAIN, troubles, auto=True)

    # Hours 1 tie; the lower incident id breaks it.
    assert decision.demoted == (
        Demotion(
            route="a",
            since=AT + timedelta(hours=1),
            reason="open incident #4 on score",
            incident_id=4,
        ),
    )
    assert decision.chain == ("b", "c")


@pytest.mark.parametrize(
    ("metric", "moves"),
    [
        ("score", True),
        ("error_rate", True),
        ("critical:refund-window", True),
        ("p95_latency_ms", False),
        ("cost_per_call_usd", False),
        ("critical", False),
    ],
)
def test_only_quality_error_and_critical_metrics_move_traffic(metric: str, moves: bool) -> None:
    decision = decide_chain(CHAIN, [trouble("a", metric=metric)], auto=True)

    assert moves_traffic(metric) is moves
    assert decision.chain == (("b", "c") if moves else CHAIN)
    assert demoted_routes(decision) == (["a"] if moves else [])


def test_troubles_of_routes_outside_the_chain_are_ignored() -> None:
    decision = decide_chain(CHAIN, [trouble("z", drop=0.0)], auto=True)

    assert decision == PolicyDecision(chain=CHAIN)


def test_when_every_route_is_in_trouble_the_least_bad_one_stays() -> None:
    troubles = [trouble("a", 1, drop=0.5), trouble("b", 2, drop=0.2), trouble("c", 3, drop=0.3)]

    decision = decide_chain(CHAIN, troubles, auto=True)

    assert decision.chain == ("b",)
    assert (decision.all_degraded, decision.kept) == (True, "b")
    assert demoted_routes(decision) == ["a", "c"]


@pytest.mark.parametrize(
    ("drops", "kept"),
    [((0.3, 0.3, 0.3), "a"), ((0.4, 0.2, 0.2), "b"), ((0.4, 0.4, 0.1), "c")],
)
def test_ties_in_the_least_bad_route_go_to_the_configured_order(
    drops: tuple[float, float, float], kept: str
) -> None:
    troubles = [trouble(r, i, drop=d) for i, (r, d) in enumerate(zip(CHAIN, drops, strict=True))]

    decision = decide_chain(CHAIN, troubles, auto=True)

    assert (decision.chain, decision.kept) == ((kept,), kept)


def test_a_route_is_ranked_by_its_worst_trouble() -> None:
    troubles = [
        trouble("a", 1, drop=0.1),
        trouble("a", 2, "error_rate", drop=0.9),
        trouble("b", 3, drop=0.5),
    ]

    decision = decide_chain(("a", "b"), troubles, auto=True)

    assert decision.kept == "b"


def test_suggest_mode_never_demotes() -> None:
    troubles = [trouble(r, i) for i, r in enumerate(CHAIN)]

    decision = decide_chain(CHAIN, troubles, auto=False)

    assert decision == PolicyDecision(chain=CHAIN)


@pytest.mark.parametrize("auto", [True, False])
def test_pins_override_troubles_and_mode(auto: bool) -> None:
    troubles = [trouble(r, i) for i, r in enumerate(CHAIN)]

    decision = decide_chain(CHAIN, troubles, auto=auto, pins=["c", "a"])

    assert decision == PolicyDecision(chain=("c", "a"), pins=("c", "a"))


def test_no_pins_and_empty_pins_both_mean_the_automatic_chain() -> None:
    assert decide_chain(CHAIN, [trouble("a")], auto=True, pins=[]).chain == ("b", "c")


def test_an_empty_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        decide_chain((), [], auto=True)


DEMOTED_A = PolicyDecision(
    chain=("b", "c"),
    demoted=(Demotion(route="a", since=AT, reason="open incident #1 on score", incident_id=1),),
)


@pytest.mark.parametrize(
    ("decision", "chain", "demoted", "pins", "same"),
    [
        (DEMOTED_A, ["b", "c"], ["a"], None, True),
        (DEMOTED_A, ["c", "b"], ["a"], None, False),
        (DEMOTED_A, ["b", "c"], [], None, False),
        (DEMOTED_A, ["b", "c"], ["a"], ["b", "c"], False),
        (PolicyDecision(chain=("c", "a"), pins=("c", "a")), ["c", "a"], [], ["c", "a"], True),
        (PolicyDecision(chain=("c", "a"), pins=("c", "a")), ["c", "a"], [], ["a", "c"], False),
        (PolicyDecision(chain=("c", "a"), pins=("c", "a")), ["c", "a"], [], None, False),
    ],
    ids=["equal", "chain-order", "demoted", "pins-added", "pinned", "pin-order", "unpinned"],
)
def test_same_as_compares_chain_demoted_set_and_pins(
    decision: PolicyDecision,
    chain: list[str],
    demoted: list[str],
    pins: list[str] | None,
    same: bool,
) -> None:
    assert decision.same_as(chain, demoted, pins) is same


def test_same_as_ignores_the_order_of_demoted_routes() -> None:
    decision = decide_chain(CHAIN, [trouble("a", 1), trouble("c", 2)], auto=True)

    assert decision.same_as(["b"], ["c", "a"], None)


ALL_DEGRADED = decide_chain(
    CHAIN, [trouble("a", 1, drop=0.5), trouble("b", 2, drop=0.1), trouble("c", 3)], auto=True
)
RESTORED = PolicyDecision(chain=CHAIN)
PINNED = PolicyDecision(chain=("c", "a"), pins=("c", "a"))


@pytest.mark.parametrize(
    ("route", "before", "decision", "sentence"),
    [
        ("a", CHAIN, DEMOTED_A, "demoted a; active chain b → c"),
        ("a", ("b", "c"), RESTORED, "restored a; active chain a → b → c"),
        ("b", ("b", "c"), DEMOTED_A, "no change; active chain b → c"),
        ("c", ("a", "c"), DEMOTED_A, "demoted a and restored b; active chain b → c"),
        (
            "a",
            CHAIN,
            ALL_DEGRADED,
            "kept b (least bad) as the only route: every route is degraded",
        ),
        ("a", CHAIN, PINNED, "chain pinned by hand to c → a; nothing changed automatically"),
    ],
    ids=["demote", "restore", "no-change", "other", "all-degraded", "pinned"],
)
def test_action_sentence_in_auto_mode(
    route: str, before: tuple[str, ...], decision: PolicyDecision, sentence: str
) -> None:
    assert action_sentence(route, before, decision, auto=True) == sentence


@pytest.mark.parametrize(
    ("route", "before", "decision", "action"),
    [
        ("a", CHAIN, DEMOTED_A, "would have demoted a; active chain b → c"),
        ("a", ("b", "c"), RESTORED, "would have restored a"),
        ("a", CHAIN, ALL_DEGRADED, "would have kept b (least bad)"),
    ],
    ids=["demote", "restore", "all-degraded"],
)
def test_action_sentence_in_suggest_mode_says_nothing_changed(
    route: str, before: tuple[str, ...], decision: PolicyDecision, action: str
) -> None:
    sentence = action_sentence(route, before, decision, auto=False)

    assert sentence.startswith("suggest mode, nothing changed: ")
    assert action in sentence


def test_action_sentence_in_suggest_mode_without_a_change_suggests_nothing() -> None:
    assert (
        action_sentence("b", ("b", "c"), DEMOTED_A, auto=False)
        == "suggest mode: no change suggested"
    )


class Situation(NamedTuple):
    configured: list[str]
    troubles: list[Trouble]
    auto: bool
    pins: list[str] | None


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    configured = draw(st.lists(st.sampled_from("abcde"), min_size=1, max_size=5, unique=True))
    troubles = draw(
        st.lists(
            st.builds(
                trouble,
                st.sampled_from("abcdez"),
                st.integers(1, 20),
                st.sampled_from(METRICS),
                hours=st.integers(0, 48),
                drop=st.floats(0.0, 1.0),
            ),
            max_size=8,
        )
    )
    pins = draw(
        st.none() | st.lists(st.sampled_from(configured), min_size=1, max_size=3, unique=True)
    )
    return Situation(configured, troubles, draw(st.booleans()), pins)


@given(situations())
def test_decided_chain_invariants(situation: Situation) -> None:
    configured, troubles, auto, pins = situation
    in_trouble = {t.route for t in troubles if moves_traffic(t.metric)}

    decision = decide_chain(configured, troubles, auto=auto, pins=pins)

    assert decision.chain
    if pins:
        assert decision.chain == tuple(pins)
        assert decision.demoted == ()
        return
    positions = [configured.index(r) for r in decision.chain]
    assert positions == sorted(positions)
    assert set(demoted_routes(decision)) | set(decision.chain) == set(configured)
    assert not set(demoted_routes(decision)) & set(decision.chain)
    if not auto:
        assert decision.chain == tuple(configured)
    elif decision.all_degraded:
        assert decision.chain == (decision.kept,)
        assert set(configured) <= in_trouble
    else:
        assert not set(decision.chain) & in_trouble


def imported_after(module: str) -> set[str]:
    """Top-level packages loaded by importing ``module`` in a fresh interpreter."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


@pytest.fixture(scope="module")
def engine_imports() -> set[str]:
    return imported_after("routewatch.policy.engine")


@pytest.mark.parametrize("package", ["httpx", "routewatch.store", "routewatch.providers"])
def test_engine_loads_no_http_client_and_no_store(engine_imports: set[str], package: str) -> None:
    assert package not in engine_imports


@pytest.mark.parametrize("package", ["sqlalchemy", "apscheduler"])
def test_engine_loads_no_database_or_scheduler_library(
    engine_imports: set[str], package: str
) -> None:
    assert package not in engine_imports
