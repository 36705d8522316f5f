import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routewatch.checks import CheckResult
from routewatch.evalset import CheckKind
from routewatch.scoring import (
    ItemScore,
    ResultFacts,
    SampleOutcome,
    WeightedItem,
    cost_usd,
    item_score,
    percentile,
    sample_score,
    stored_sample_score,
    summarize,
)


def checks(*passed: bool) -> list[CheckResult]:
    return [
        CheckResult(kind=CheckKind.contains, index=i, passed=p, detail="" if p else "missing")
        for i, p in enumerate(passed)
    ]


def scored(item_id: str, score: float | None, threshold: float = 0.7) -> ItemScore:
    return item_score(item_id, [SampleOutcome(score=score)], threshold)


def ok(latency_ms: float = 100.0) -> ResultFacts:
    return ResultFacts(latency_ms=latency_ms, tokens_in=10, tokens_out=20, cost_usd=0.01)


ERRORED = ResultFacts(latency_ms=60_000.0, tokens_in=10, cost_usd=0.001, errored=True)


@pytest.mark.parametrize(
    ("check_results", "judge_scores", "expected"),
    [
        (checks(True, True, False, False), [], 0.5),
        ([], [0.25, 0.75], 0.5),
        (checks(True, False), [1.0, 0.0], 0.5),
        (checks(True), [0.0], 0.5),
        (checks(True, True, True), [0.0], 0.75),
        ([], [], None),
    ],
)
def test_sample_score_is_the_plain_mean(
    check_results: list[CheckResult], judge_scores: list[float], expected: float | None
) -> None:
    assert sample_score(check_results, judge_scores) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_sample_score_rejects_unnormalised_judge_scores(bad: float) -> None:
    with pytest.raises(ValueError, match="normalised"):
        sample_score([], [bad])


@pytest.mark.parametrize(
    ("samples", "score", "passed", "counts"),
    [
        ([SampleOutcome(score=0.6), SampleOutcome(score=1.0)], 0.8, True, (2, 0, 0)),
        ([SampleOutcome(score=0.9), SampleOutcome(score=None, errored=True)], 0.9, True, (1, 1, 0)),
        (
            [SampleOutcome(score=0.2), SampleOutcome(score=1.0, fallback=True)],
            0.2,
            False,
            (1, 0, 1),
        ),
        ([SampleOutcome(score=None, errored=True, fallback=True)], None, None, (0, 1, 0)),
        ([SampleOutcome(score=1.0, fallback=True)], None, None, (0, 0, 1)),
        ([SampleOutcome(score=None)], None, None, (0, 0, 0)),
        ([], None, None, (0, 0, 0)),
    ],
)
def test_item_score_uses_only_samples_the_route_answered(
    samples: list[SampleOutcome],
    score: float | None,
    passed: bool | None,
    counts: tuple[int, int, int],
) -> None:
    result = item_score("refund", samples, 0.7)

    assert (result.score, result.passed) == (score, passed)
    assert (result.samples_scored, result.samples_errored, result.samples_fallback) == counts


@pytest.mark.parametrize(
    ("score", "passed"), [(0.7, True), (0.6999999999999999, True), (0.69, False)]
)
def test_item_passes_at_the_threshold(score: float, passed: bool) -> None:
    assert scored("a", score).passed is passed


def test_run_score_weights_items_and_pass_rate_counts_them() -> None:
    items = [
        WeightedItem(item=scored("a", 1.0), weight=3.0),
        WeightedItem(item=scored("b", 0.0), weight=1.0),
    ]

    summary = summarize(items, [])

    assert (summary.score, summary.pass_rate) == (0.75, 0.5)
    assert (summary.items_total, summary.items_scored, summary.items_passed) == (2, 2, 1)


def test_unscored_items_stay_out_of_score_and_pass_rate() -> None:
    items = [WeightedItem(item=scored("a", 0.9)), WeightedItem(item=scored("b", None))]

    summary = summarize(items, [])

    assert (summary.score, summary.pass_rate, summary.items_scored) == (0.9, 1.0, 1)


def test_errors_change_error_rate_not_score() -> None:
    items = [WeightedItem(item=scored("a", 0.8))]

    clean = summarize(items, [ok(), ok()])
    flaky = summarize(items, [ok(), ok(), ERRORED, ERRORED])

    assert (clean.error_rate, flaky.error_rate) == (0.0, 0.5)
    assert clean.score == flaky.score == 0.8


def test_latency_ignores_errors_but_cost_and_tokens_count_them() -> None:
    results = [ok(100.0), ok(200.0), ERRORED]

    summary = summarize([], results)

    assert (summary.p50_latency_ms, summary.p95_latency_ms) == (150.0, 195.0)
    assert (summary.tokens_in, summary.tokens_out) == (30, 40)
    assert summary.cost_usd == pytest.approx(0.021)


def test_fallbacks_are_counted_once_and_errors_win() -> None:
    results = [
        ResultFacts(latency_ms=1.0, fallback=True),
        ResultFacts(latency_ms=1.0, fallback=True, errored=True),
    ]

    summary = summarize([], results)

    assert (summary.fallback_total, summary.errors_total, summary.results_total) == (1, 1, 2)


def test_empty_run_has_no_rates() -> None:
    summary = summarize([], [])

    assert summary.score is summary.pass_rate is summary.error_rate is None
    assert summary.p50_latency_ms is summary.p95_latency_ms is None


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([float(v) for v in range(1, 11)], 95, 9.55),
        ([], 50, None),
    ],
)
def test_percentile_interpolates_linearly(
    values: list[float], q: float, expected: float | None
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize("q", [-1, 101])
def test_percentile_rejects_q_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], q)


def test_cost_is_priced_per_million_tokens() -> None:
    assert cost_usd(1_000_000, 500_000, 0.27, 1.10) == pytest.approx(0.82)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("inf"), float("nan")])
def test_weight_must_be_positive_and_finite(weight: float) -> None:
    with pytest.raises(ValueError, match="weight"):
        WeightedItem(item=scored("a", 1.0), weight=weight)


unit = st.floats(0.0, 1.0)
weighted_items = st.lists(
    st.builds(
        lambda i, s, w: WeightedItem(item=scored(f"item-{i}", s), weight=w),
        st.integers(0, 10_000),
        st.none() | unit,
        st.floats(0.01, 100.0),
    ),
    max_size=30,
)
results = st.lists(
    st.builds(
        ResultFacts,
        latency_ms=st.floats(0.0, 1e6),
        tokens_in=st.integers(0, 10**6),
        tokens_out=st.integers(0, 10**6),
        cost_usd=st.floats(0.0, 10.0),
        errored=st.booleans(),
        fallback=st.booleans(),
    ),
    max_size=30,
)


@given(weighted_items, results, st.randoms(use_true_random=False))
def test_order_does_not_change_the_summary(
    items: list[WeightedItem], facts: list[ResultFacts], rnd: random.Random
) -> None:
    shuffled_items, shuffled_facts = items[:], facts[:]
    rnd.shuffle(shuffled_items)
    rnd.shuffle(shuffled_facts)

    assert summarize(shuffled_items, shuffled_facts) == summarize(items, facts)


@given(weighted_items, st.data())
def test_a_lower_item_score_never_raises_the_run_score(
    items: list[WeightedItem], data: st.DataObject
) -> None:
    scored_at = [i for i, w in enumerate(items) if w.item.score is not None]
    assume(scored_at)
    i = data.draw(st.sampled_from(scored_at))
    old = items[i].item.score
    assert old is not None
    lowered = WeightedItem(item=scored("x", data.draw(st.floats(0.0, old))), weight=items[i].weight)

    before = summarize(items, []).score
    after = summarize([*items[:i], lowered, *items[i + 1 :]], []).score

    assert before is not None
    assert after is not None
    assert after <= before


@given(
    st.lists(
        st.builds(
            SampleOutcome, score=st.none() | unit, errored=st.booleans(), fallback=st.booleans()
        )
    )
)
def test_item_score_stays_in_0_to_1_and_counts_every_sample(samples: list[SampleOutcome]) -> None:
    result = item_score("a", samples, 0.7)

    assert result.score is None or 0.0 <= result.score <= 1.0
    assert result.samples_scored + result.samples_errored + result.samples_fallback <= len(samples)


def test_stored_sample_score_weighs_scorers_and_matches_sample_score_at_weight_one() -> None:
    checks = [
        CheckResult(kind=CheckKind.contains, index=0, passed=True, detail=""),
        CheckResult(kind=CheckKind.regex, index=1, passed=False, detail="no match"),
    ]

    assert stored_sample_score([(1.0, 1.0), (0.0, 1.0), (0.5, 1.0)]) == sample_score(checks, [0.5])
    assert stored_sample_score([(1.0, 3.0), (0.0, 1.0)]) == 0.75
    assert stored_sample_score([]) is None
