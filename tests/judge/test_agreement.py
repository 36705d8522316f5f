"""The judge's agreement with human scores: the maths, and `routewatch judge agreement`."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy.stats import spearmanr

from routewatch.cli import run
from routewatch.evalset import load_eval_set
from routewatch.judge.agreement import (
    LabelledVerdict,
    PassTable,
    agreement,
    agreement_rows,
    cohen_kappa,
    iso_week,
    spearman,
)
from routewatch.scaffold import EVAL_TEMPLATE, template_text
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from runner_project import SIM_MODELS, SIM_SCENARIO, rows, write_project

SCALE = (1, 5)


def table(both_pass: int, human_only: int, judge_only: int, both_fail: int) -> PassTable:
    return PassTable(
        both_pass=both_pass, human_only=human_only, judge_only=judge_only, both_fail=both_fail
    )


def test_kappa_of_a_known_table() -> None:
    """po = 35/50, pe = .5 * .6 + .5 * .4 = .5, so kappa = (.7 - .5) / (1 - .5)."""
    assert cohen_kappa(table(20, 5, 10, 15)).value == pytest.approx(0.4)


def test_kappa_of_perfect_agreement_is_one() -> None:
    assert cohen_kappa(table(7, 0, 0, 3)).value == pytest.approx(1.0)


def test_kappa_of_opposite_verdicts_is_minus_one() -> None:
    assert cohen_kappa(table(0, 5, 5, 0)).value == pytest.approx(-1.0)


@pytest.mark.parametrize(("counts", "word"), [((9, 0, 0, 0), "pass"), ((0, 0, 0, 4), "fail")])
def test_kappa_is_undefined_when_both_sides_put_everything_in_one_class(
    counts: tuple[int, int, int, int], word: str
) -> None:
    kappa = cohen_kappa(table(*counts))

    assert kappa.value is None
    assert kappa.note == f"person and judge {word} every output: chance agrees"


def test_kappa_without_pairs_is_undefined() -> None:
    assert cohen_kappa(table(0, 0, 0, 0)).value is None


def test_spearman_of_a_known_ranking() -> None:
    """Sum of squared rank differences 4: rho = 1 - 6 * 4 / (5 * 24); t = 2.309 on 3 df."""
    rho = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])

    assert rho.value == pytest.approx(0.8)
    assert rho.p_value == pytest.approx(0.1041, abs=1e-3)


@pytest.mark.parametrize(
    ("humans", "judges", "note"),
    [
        ([5, 1], [5, 1], "fewer than 3 pairs"),
        ([], [], "fewer than 3 pairs"),
        ([3, 3, 3], [1, 4, 5], "every human score is the same"),
        ([1, 4, 5], [5, 5, 5], "the judge gave every output the same grade"),
    ],
)
def test_spearman_is_undefined_without_ranks_to_correlate(
    humans: list[float], judges: list[float], note: str
) -> None:
    rho = spearman(humans, judges)

    assert (rho.value, rho.p_value, rho.note) == (None, None, note)


def test_exact_share_and_mean_absolute_difference_in_scale_points() -> None:
    found = agreement([(5, 4), (1, 3), (2, 2)], scale=SCALE, pass_threshold=0.7)

    assert found.n == 3
    assert found.exact == pytest.approx(1 / 3)
    assert found.mean_abs_diff == pytest.approx(1.0)


def test_a_fractional_judge_grade_is_exact_when_it_rounds_to_the_persons_grade() -> None:
    """Grades from logprobs or averaged judge samples: 4.7 is a 5, 4.5 is no grade's."""
    found = agreement(
        [(5, 4.7), (3, 3.4), (4, 4.5), (2, 3.0), (1, 1.0)], scale=SCALE, pass_threshold=0.7
    )

    assert found.exact == pytest.approx(3 / 5)
    assert found.mean_abs_diff == pytest.approx((0.3 + 0.4 + 0.5 + 1.0) / 5)


def test_pass_is_the_normalised_grade_at_the_threshold() -> None:
    """On 1-5 at 0.75, a 4 is (4 - 1) / 4 = 0.75: a pass; a 3 is 0.5: a fail."""
    found = agreement([(4, 3), (3, 4), (4, 4)], scale=SCALE, pass_threshold=0.75)

    assert found.passes == table(1, 1, 1, 0)


def test_no_pairs_gives_no_numbers() -> None:
    found = agreement([], scale=SCALE, pass_threshold=0.7)

    assert (found.n, found.exact, found.mean_abs_diff, found.kappa.value) == (0, None, None, None)


def verdict(
    run_id: int,
    route: str,
    item: str,
    criterion: str,
    human: float,
    judge: float,
    verdict_id: int | None = None,
    week: str | None = None,
) -> Any:
    return LabelledVerdict(
        run_id=run_id,
        route=route,
        week=week or ("2026-W44" if run_id == 1 else "2026-W45"),
        item=item,
        criterion=criterion,
        human=human,
        judge=judge,
        verdict_ids=(verdict_id or run_id * 1000 + sum(map(ord, criterion)),),
    )


def test_rows_compare_each_criterion_and_their_mean_per_route_and_all_routes() -> None:
    verdicts = [
        verdict(1, "a", "x", "c1", 5, 5),
        verdict(1, "a", "x", "c2", 5, 3),
        verdict(2, "b", "x", "c1", 5, 1),
        verdict(2, "b", "x", "c2", 5, 1),
    ]

    rows = agreement_rows(verdicts, criteria=["c2", "c1"], scale=SCALE, pass_threshold=0.7)

    assert [(r.criterion, r.route, r.overall.n) for r in rows] == [
        ("c2", "a", 1),
        ("c2", "b", 1),
        ("c2", None, 2),
        ("c1", "a", 1),
        ("c1", "b", 1),
        ("c1", None, 2),
        (None, "a", 1),
        (None, "b", 1),
        (None, None, 2),
    ]
    mean_a = rows[6].overall
    assert mean_a.mean_abs_diff == pytest.approx(1.0)  # |5 - (5 + 3) / 2|
    assert [w.week for w in rows[8].weeks] == ["2026-W44", "2026-W45"]


def test_one_criterion_and_one_route_need_no_summary_rows() -> None:
    rows = agreement_rows(
        [verdict(1, "a", "x", "c1", 5, 5)], criteria=["c1"], scale=SCALE, pass_threshold=0.7
    )

    assert [(r.criterion, r.route) for r in rows] == [("c1", "a")]


def test_a_verdict_reused_by_many_runs_is_one_pair_overall_and_once_a_week() -> None:
    """Runs 1-3 reuse cached verdict 7 (weeks W44, W44, W45); run 4 made a new one."""
    verdicts = [
        verdict(1, "a", "x", "c1", 5, 4, verdict_id=7, week="2026-W44"),
        verdict(2, "a", "x", "c1", 5, 4, verdict_id=7, week="2026-W44"),
        verdict(3, "a", "x", "c1", 5, 4, verdict_id=7, week="2026-W45"),
        verdict(4, "a", "x", "c1", 5, 2, verdict_id=8, week="2026-W45"),
    ]

    (row,) = agreement_rows(verdicts, criteria=["c1"], scale=SCALE, pass_threshold=0.7)

    assert row.overall.n == 2
    assert [(w.week, w.agreement.n) for w in row.weeks] == [("2026-W44", 1), ("2026-W45", 2)]


def test_the_mean_over_criteria_counts_each_set_of_verdicts_once() -> None:
    verdicts = [
        verdict(run, "a", "x", criterion, 5, 4, verdict_id=vid, week="2026-W45")
        for run in (1, 2)
        for criterion, vid in (("c1", 7), ("c2", 8))
    ]

    rows = agreement_rows(verdicts, criteria=["c1", "c2"], scale=SCALE, pass_threshold=0.7)

    assert [(r.criterion, r.overall.n) for r in rows] == [("c1", 1), ("c2", 1), (None, 1)]


def test_one_verdict_shared_by_two_items_is_a_pair_for_each() -> None:
    verdicts = [
        verdict(1, "a", "x", "c1", 5, 4, verdict_id=7),
        verdict(1, "a", "y", "c1", 1, 4, verdict_id=7),
    ]

    (row,) = agreement_rows(verdicts, criteria=["c1"], scale=SCALE, pass_threshold=0.7)

    assert row.overall.n == 2


def test_iso_week_is_taken_in_the_configured_time_zone() -> None:
    at = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)  # a Sunday night in UTC

    assert (iso_week(at, "UTC"), iso_week(at, "Europe/Berlin")) == ("2026-W44", "2026-W45")


# End to end, against the simulator.

HUMAN = {
    "refund-window": 5,
    "reset-password": 4,
    "order-status-json": 2,
    "support-hours": 1,
    "cancel-subscription": 5,
}
"""`cheapest-plan` stays unlabelled."""
ROUTES = {"good": {"model": "perfect"}, "mixed": {"model": "mixed"}}


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("sim") / EVAL_TEMPLATE
    path.write_text(template_text(EVAL_TEMPLATE))
    scenario = {**SIM_SCENARIO, "models": {**SIM_MODELS, "mixed": {"quality": 0.5}}}
    app = create_app(parse_scenario(scenario), {"support-faq": load_eval_set(path)})
    with serve_in_thread(app) as url:
        yield url


def labelled_project(
    root: Path, sim: str, labels: dict[str, int] = HUMAN, database_url: str | None = None
) -> Path:
    config = write_project(root, sim, ROUTES, database_url=database_url)
    evalset = yaml.safe_load(template_text(EVAL_TEMPLATE))
    for item in evalset["items"]:
        item.pop("human_score", None)
        if item["id"] in labels:
            item["human_score"] = labels[item["id"]]
    (root / "evals" / EVAL_TEMPLATE).write_text(yaml.safe_dump(evalset))
    return config


def run_two_days(config: Path) -> None:
    for day in (1, 2):  # a Sunday and a Monday: two ISO weeks
        assert run(["run", "-c", str(config), "--at", f"2026-11-{day:02d}T06:00:00Z"]) == 0


def stored_scores(db: str, route: str, criterion: str) -> list[tuple[str, int]]:
    """(item, verdict id) of each run's first sample, read straight from the tables."""
    runs = {r["id"] for r in rows(db, "runs") if r["route"] == route}
    results = {
        r["id"]: r["item_id"]
        for r in rows(db, "results")
        if r["run_id"] in runs and r["sample"] == 0 and r["item_id"] in HUMAN
    }
    return [
        (results[s["result_id"]], s["judge_verdict_id"])
        for s in rows(db, "scores")
        if s["result_id"] in results and s["scorer"] == f"judge:{criterion}"
    ]


def stored_pairs(db: str, route: str, criterion: str) -> list[tuple[float, float]]:
    """(human, judge) once per distinct (item, verdict): one pair per judge decision."""
    verdicts = {v["id"]: v["raw_score"] for v in rows(db, "judge_verdicts")}
    distinct = sorted(set(stored_scores(db, route, criterion)))
    return [(HUMAN[item], verdicts[verdict_id]) for item, verdict_id in distinct]


def kappa_by_hand(pairs: list[tuple[float, float]], threshold: float = 0.7) -> float:
    passed = [((h - 1) / 4 >= threshold, (j - 1) / 4 >= threshold) for h, j in pairs]
    n = len(passed)
    observed = sum(h == j for h, j in passed) / n
    human = sum(h for h, _ in passed) / n
    judge = sum(j for _, j in passed) / n
    expected = human * judge + (1 - human) * (1 - judge)
    return (observed - expected) / (1 - expected)


def json_rows(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert run(["judge", "agreement", "-c", str(config), "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)["eval_sets"]
    return list(found["rows"])


def test_agreement_matches_what_the_stored_rows_say(
    tmp_path: Path, sim: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_project(tmp_path, sim, database_url=db_url)
    run_two_days(config)
    pairs = stored_pairs(db_url, "mixed", "correctness")
    capsys.readouterr()

    assert run(["judge", "agreement", "-c", str(config)]) == 0

    out = capsys.readouterr().out
    assert len(stored_scores(db_url, "mixed", "correctness")) == len(HUMAN) * 2
    line = next(x for x in out.splitlines() if x.startswith("correctness  mixed"))
    assert line.split()[3] == str(len(pairs))
    assert f"{kappa_by_hand(pairs):.2f}" in line.split()
    rho = spearmanr([h for h, _ in pairs], [j for _, j in pairs]).statistic
    assert f"{rho:.2f}" in line.split()
    assert "2026-W44" in out
    assert "2026-W45" in out


def test_json_gives_each_row_with_its_weeks(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_project(tmp_path, sim)
    run_two_days(config)
    pairs = stored_pairs(f"sqlite:///{tmp_path / 'rw.db'}", "good", "helpfulness")

    found = json_rows(capsys, config)

    row = next(r for r in found if (r["criterion"], r["route"]) == ("helpfulness", "good"))
    assert row["overall"]["n"] == len(pairs) == len(HUMAN)
    assert row["overall"]["kappa"]["value"] == pytest.approx(kappa_by_hand(pairs))
    assert row["overall"]["spearman"]["note"] == "the judge gave every output the same grade"
    assert [w["week"] for w in row["weeks"]] == ["2026-W44", "2026-W45"]
    assert {(r["criterion"], r["route"]) for r in found} >= {(None, None), ("correctness", None)}


def test_a_deterministic_route_counts_each_cached_verdict_once(
    tmp_path: Path, sim: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three runs in one week reuse the first run's verdicts: 5 decisions, not 15 pairs."""
    config = labelled_project(tmp_path, sim, database_url=db_url)
    for day in (2, 3, 4):
        assert run(["run", "-c", str(config), "--at", f"2026-11-{day:02d}T06:00:00Z"]) == 0
    scored = stored_scores(db_url, "good", "correctness")

    found = json_rows(capsys, config)

    row = next(r for r in found if (r["criterion"], r["route"]) == ("correctness", "good"))
    assert len(scored) == 3 * len(HUMAN)
    assert row["overall"]["n"] == len(set(scored)) == len(HUMAN)
    assert [(w["week"], w["agreement"]["n"]) for w in row["weeks"]] == [("2026-W45", len(HUMAN))]


def test_an_unknown_eval_set_is_bad_input_naming_the_known_ones(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_project(tmp_path, sim)

    assert run(["judge", "agreement", "-c", str(config), "--eval-set", "nope"]) == 1

    assert "known: support-faq" in capsys.readouterr().err


def test_a_set_without_a_judge_says_so_and_succeeds(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, ROUTES, items=[{"id": "a", "input": "hi"}])

    assert run(["judge", "agreement", "-c", str(config), "--eval-set", "bench"]) == 0

    assert "bench: not judged (no `criteria`)" in capsys.readouterr().out


def test_a_set_without_human_scores_says_so_and_succeeds(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_project(tmp_path, sim, labels={})

    assert run(["judge", "agreement", "-c", str(config)]) == 0

    assert "support-faq: no item has a `human_score`" in capsys.readouterr().out


def test_labels_without_runs_say_there_is_nothing_yet(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = labelled_project(tmp_path, sim)

    assert run(["judge", "agreement", "-c", str(config)]) == 0

    assert "no judge verdict on a labelled item yet" in capsys.readouterr().out
