from __future__ import annotations

from dataclasses import replace

import numpy as np
from routesim import record

from routewatch.config import Detection
from routewatch.detect.baseline import RunRecord, select_baseline
from routewatch.detect.budget import Detector
from routewatch.detect.findings import Metric, decide, evaluate

ALPHA = 1 / 365
SETTINGS = Detection()


def history(p: np.ndarray, runs: int, rng: np.random.Generator) -> list[RunRecord]:
    """``runs`` stable runs, newest first, with ids runs..1."""
    return [record(runs - i, rng.binomial(1, p), 1) for i in range(runs)]


def judged(today: RunRecord, past: list[RunRecord], settings: Detection = SETTINGS):
    ev = evaluate(today, past, settings, alpha_route=ALPHA)
    return ev, decide([ev], settings, alpha_cycle=ALPHA, tests=1)[0]


def near_det(n: int = 200) -> np.ndarray:
    return np.where(np.arange(n) % 10 == 0, 0.0, 1.0)


def test_too_few_baseline_runs_is_unknown_and_pages_nothing() -> None:
    rng = np.random.default_rng(1)
    past = history(near_det(), 4, rng)

    ev, decision = judged(record(5, np.zeros(200, dtype=int), 1), past)

    assert not ev.known
    assert decision.findings == ()


def test_broken_items_page_with_the_worst_items_named() -> None:
    rng = np.random.default_rng(2)
    p = near_det()
    past = history(p, 21, rng)
    today = p.copy()
    today[[1, 2, 3, 4, 5, 6, 7, 8, 9, 11]] = 0

    _, decision = judged(record(22, today.astype(int), 1), past)

    detectors = {f.detector for f in decision.findings}
    assert Detector.cetw in detectors
    worst = {w.item_id for w in decision.findings[0].worst_items}
    assert worst == {f"item-{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11)}


def test_a_significant_but_trivial_drop_does_not_page() -> None:
    """500 deterministic items, 4 break: p is tiny, but 0.8 points < min_effect (2)."""
    rng = np.random.default_rng(3)
    p = near_det(500)
    past = history(p, 21, rng)
    today = p.copy()
    today[[1, 2, 3, 4]] = 0

    ev, decision = judged(record(22, today.astype(int), 1), past)

    assert ev.binary is not None
    assert ev.binary.p_cetw < 1e-4
    assert decision.findings == ()


def test_new_items_of_a_changed_eval_set_start_empty_and_raise_nothing() -> None:
    rng = np.random.default_rng(4)
    p = near_det()
    past = history(p, 21, rng)
    today = record(22, p.astype(int), 1)
    # A new version: 20 items replaced by new ones (new hashes) that all fail.
    items = dict(today.items)
    for i in range(20):
        old = items.pop(f"h{i:05d}")
        items[f"new{i}"] = replace(
            old, item_hash=f"new{i}", score=0.0, passed=False, samples_passed=0
        )

    ev, decision = judged(replace(today, items=items), past)

    assert ev.paired_items == 180
    assert decision.findings == ()


def test_a_critical_item_pages_after_failing_in_consecutive_runs() -> None:
    rng = np.random.default_rng(5)
    p = near_det()
    p[0] = 1.0
    past = history(p, 20, rng)
    today = p.copy()
    today[0] = 0
    critical = frozenset({0})
    first = record(21, today.astype(int), 1, critical)

    _, once = judged(first, past)
    _, twice = judged(record(22, today.astype(int), 1, critical), [first, *past])

    assert [f.metric for f in once.findings] == []
    assert [f.metric for f in twice.findings] == ["critical:item-0"]


def test_an_error_burst_is_its_own_finding_not_a_quality_drop() -> None:
    rng = np.random.default_rng(6)
    p = near_det()
    past = history(p, 21, rng)
    today = replace(record(22, p.astype(int), 1), errors_total=30, results_total=230)

    _, decision = judged(today, past)

    assert [(f.metric, f.detector) for f in decision.findings] == [
        (Metric.error_rate, Detector.errors)
    ]


def test_a_quality_drop_and_an_error_burst_in_one_run_both_page() -> None:
    """Under BH a rejected route pages every candidate below the step-up level, not only
    its smallest."""
    rng = np.random.default_rng(6)
    p = near_det()
    past = history(p, 21, rng)
    broken = p.copy()
    broken[[1, 2, 3, 4, 5, 6, 7, 8, 9, 11]] = 0
    today = replace(record(22, broken.astype(int), 1), errors_total=30, results_total=230)

    _, decision = judged(today, past)

    assert {f.metric for f in decision.findings} == {Metric.score, Metric.error_rate}


def test_latency_pages_only_on_a_material_rise() -> None:
    rng = np.random.default_rng(7)
    p = near_det()
    past = [replace(r, p95_latency_ms=400 + 5 * (r.run_id % 3)) for r in history(p, 21, rng)]

    _, doubled = judged(replace(record(22, p.astype(int), 1), p95_latency_ms=900), past)
    _, slower = judged(replace(record(22, p.astype(int), 1), p95_latency_ms=440), past)

    assert [f.metric for f in doubled.findings] == [Metric.latency]
    assert slower.findings == ()


def test_judge_suspect_and_in_incident_runs_stay_out_of_the_baseline() -> None:
    rng = np.random.default_rng(8)
    runs = history(near_det(), 30, rng)
    runs[10] = replace(runs[10], judge_suspect=True)
    runs[11] = replace(runs[11], incident_metrics=frozenset({"score"}))

    base = select_baseline(runs, Metric.score, SETTINGS)

    ids = [r.run_id for r in base]
    assert runs[10].run_id not in ids
    assert runs[11].run_id not in ids
    assert len(base) == 14
    assert ids[0] == runs[7].run_id  # the 7 newest runs are the guard band


def test_sigma_method_pages_on_the_sigma_rule_alone() -> None:
    rng = np.random.default_rng(9)
    p = near_det()
    past = history(p, 21, rng)
    today = p.copy()
    today[1:12] = 0
    sigma_only = SETTINGS.model_copy(update={"method": "sigma"})

    _, decision = judged(record(22, today.astype(int), 1), past, sigma_only)

    assert [f.detector for f in decision.findings] == [Detector.sigma]


def test_bonferroni_across_routes_is_stricter_than_one_route_alone() -> None:
    rng = np.random.default_rng(10)
    p = near_det()
    past = history(p, 21, rng)
    today = p.copy()
    today[1:6] = 0  # 5 of 180 reliable items break: p about 1e-6
    run = record(22, today.astype(int), 1)
    fleet = SETTINGS.model_copy(update={"multiplicity": "bonferroni"})
    ev_one = evaluate(run, past, fleet, alpha_route=ALPHA)
    ev_many = evaluate(run, past, fleet, alpha_route=ALPHA / 1e6)

    one = decide([ev_one], fleet, alpha_cycle=ALPHA, tests=1)[0]
    many = decide([ev_many], fleet, alpha_cycle=ALPHA, tests=1_000_000)[0]

    assert one.findings
    assert not [f for f in many.findings if f.p_value is not None]


def test_a_judge_suspect_run_raises_no_quality_finding_and_keeps_the_cusum() -> None:
    rng = np.random.default_rng(11)
    p = near_det()
    past = history(p, 21, rng)
    past[0] = replace(past[0], cusum=2.5)
    today = p.copy()
    today[1:20] = 0
    suspect = replace(record(22, today.astype(int), 1), judge_suspect=True)

    ev, decision = judged(suspect, past)

    assert ev.known
    assert ev.paired_items == 0
    assert ev.cusum == 2.5
    assert decision.findings == ()


def test_item_histories_reach_back_item_history_runs_while_the_sigma_rule_keeps_its_own() -> None:
    """Item 1 failed in the older half of 35 runs and passed since: its item history
    (28 runs behind the 7-run guard band) says 0.5, the sigma rule's 14 runs say 1.0."""
    p = near_det()
    runs = []
    for run_id in range(1, 36):
        passes = p.astype(int)
        passes[1] = 1 if run_id > 14 else 0
        runs.append(record(run_id, passes, 1))
    past = runs[::-1]
    today = p.astype(int)
    today[1] = 0

    ev, _ = judged(record(36, today, 1), past)

    assert ev.baseline_runs == SETTINGS.baseline_runs
    assert ev.sigma is not None
    assert abs(ev.sigma.mean - 0.9) < 1e-12  # item 1 passed in all 14 of the rule's runs
    (worst,) = (w for w in ev.candidates[0].worst_items if w.item_id == "item-1")
    assert worst.baseline == 0.5
    short = Detection(item_history_runs=SETTINGS.baseline_runs)
    (worst,) = (
        w
        for w in evaluate(record(36, today, 1), past, short, alpha_route=ALPHA)
        .candidates[0]
        .worst_items
        if w.item_id == "item-1"
    )
    assert worst.baseline == 1.0


def test_item_histories_skip_runs_inside_an_incident() -> None:
    p = near_det()
    past = [record(36 - i, p.astype(int), 1) for i in range(35)]
    # The older half was inside an open score incident, with item 1 failing throughout.
    for i in range(14, 35):
        passes = p.astype(int)
        passes[1] = 0
        past[i] = replace(record(36 - i, passes, 1), incident_metrics=frozenset({"score"}))

    ev, _ = judged(record(36, p.astype(int), 1), past)

    assert ev.binary is not None
    assert ev.binary.drop == 0.0  # item 1's history is all passes: the incident runs are out
