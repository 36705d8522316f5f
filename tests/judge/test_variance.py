"""The judge's share of an item's score spread apart from the route's: pure, then end to end."""

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from judge_runs import ITEMS, run_at

from routewatch.cli import run
from routewatch.judge.variance import ItemGrades, JudgedOutput, decompose, split_item
from runner_project import faq_simulator, write_project


def normal_items(
    route_sd: float, judge_sd: float, *, items: int = 2000, samples: int = 3, grades: int = 3
) -> list[ItemGrades]:
    """Items whose outputs' true grades spread by ``route_sd``, and each grade by ``judge_sd``."""
    rng = random.Random(7)
    found = []
    for i in range(items):
        centre = rng.gauss(3.0, 0.5)
        outputs = []
        for _ in range(samples):
            true = centre + rng.gauss(0.0, route_sd)
            outputs.append(
                JudgedOutput(grades=tuple(true + rng.gauss(0.0, judge_sd) for _ in range(grades)))
            )
        found.append(ItemGrades(item_id=f"i{i}", run_id=1, outputs=tuple(outputs)))
    return found


def test_known_variances_are_recovered() -> None:
    split = decompose(normal_items(route_sd=1.0, judge_sd=0.5))

    assert split.route_variance == pytest.approx(1.0, abs=0.1)
    assert split.judge_variance == pytest.approx(0.25, abs=0.02)
    assert split.judge_share == pytest.approx(0.2, abs=0.02)
    assert split.items == 2000


def test_judge_noise_alone_gives_the_judge_the_whole_share() -> None:
    split = decompose(normal_items(route_sd=0.0, judge_sd=0.7))

    assert split.judge_share == pytest.approx(1.0, abs=0.05)


def test_route_spread_alone_gives_the_judge_no_share() -> None:
    split = decompose(normal_items(route_sd=0.8, judge_sd=0.0))

    assert split.judge_share == pytest.approx(0.0, abs=1e-9)
    assert split.route_variance == pytest.approx(0.64, abs=0.06)


def test_balanced_outputs_give_the_textbook_estimator() -> None:
    """Three outputs, two grades each: MS_within = 0.5, MS_between = 2 * 4 = 8."""
    outputs = [JudgedOutput(grades=g) for g in ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))]

    judge, route = split_item(outputs) or (None, None)

    assert judge == pytest.approx(0.5)
    assert route == pytest.approx((8.0 - 0.5) / 2)


def test_one_output_given_by_every_sample_has_no_route_spread() -> None:
    """The cache judges a repeated output once: its grades count once, its mean thrice."""
    judge, route = split_item([JudgedOutput(grades=(3.0, 4.0, 5.0), copies=3)]) or (None, None)

    assert judge == pytest.approx(1.0)
    assert route == pytest.approx(0.0)


def test_outputs_repeated_through_the_cache_still_give_the_route_spread() -> None:
    """Two possible outputs a grade apart, drawn 50/50: the route variance is 0.25."""
    rng = random.Random(3)
    items = []
    for i in range(3000):
        picks = Counter(rng.randrange(2) for _ in range(3))
        outputs = tuple(
            JudgedOutput(grades=tuple(3.0 + p + rng.gauss(0, 0.6) for _ in range(3)), copies=n)
            for p, n in picks.items()
        )
        items.append(ItemGrades(item_id=f"i{i}", run_id=1, outputs=outputs))

    split = decompose(items)

    assert split.route_variance == pytest.approx(0.25, abs=0.03)
    assert split.judge_variance == pytest.approx(0.36, abs=0.03)


@pytest.mark.parametrize(
    "outputs",
    [
        [JudgedOutput(grades=(4.0, 5.0))],  # one result of the item
        [JudgedOutput(grades=(4.0,)), JudgedOutput(grades=(5.0,))],  # one grade per output
        [],
    ],
)
def test_an_item_without_two_results_and_two_grades_cannot_tell(
    outputs: list[JudgedOutput],
) -> None:
    assert split_item(outputs) is None
    assert decompose([ItemGrades(item_id="i", run_id=1, outputs=tuple(outputs))]).items == 0


def test_the_noisiest_items_come_first_averaged_over_their_runs() -> None:
    def item(item_id: str, run_id: int, spread: float) -> ItemGrades:
        grades = (3.0 - spread, 3.0 + spread)
        outputs = (JudgedOutput(grades=grades), JudgedOutput(grades=grades))
        return ItemGrades(item_id=item_id, run_id=run_id, outputs=outputs)

    split = decompose([item("calm", 1, 0.0), item("loud", 1, 1.0), item("loud", 2, 0.5)])

    assert [(i.item_id, i.units) for i in split.noisiest] == [("loud", 2)]
    assert split.noisiest[0].judge_variance == pytest.approx((2.0 + 0.5) / 2)


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def variance_json(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    capsys.readouterr()
    code = run(["judge", "variance", "-c", str(config), "--route", "r", "--json", *args])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def shares(body: Any) -> dict[str, float]:
    (found,) = body["eval_sets"]
    return {c["criterion"]: c["judge_share"] for c in found["criteria"]}


def noisy_project(
    tmp_path: Path, sim: str, *, route_quality: float, noise: float, db_url: str | None = None
) -> Path:
    """The route `r` on model `coin` answering right with ``route_quality``, 3 samples;
    the judge 3 samples, each grade one step off with probability ``noise``."""
    httpx.patch(f"{sim}/admin/models/coin", json={"quality": route_quality}).raise_for_status()
    httpx.patch(f"{sim}/admin/models/judge", json={"grade_noise": noise}).raise_for_status()
    return write_project(
        tmp_path,
        sim,
        {"r": {"model": "coin", "samples": 3}},
        database_url=db_url,
        judge={"judge_samples": 3},
    )


def test_a_noisy_judge_on_a_steady_route_holds_the_whole_spread(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every sample answers the same, so the cache judges each output once: no route spread."""
    config = noisy_project(tmp_path, sim, route_quality=1.0, noise=0.5)
    run_at(config, 1)

    body = variance_json(config, capsys)

    assert shares(body) == {"correctness": 1.0, "helpfulness": 1.0}
    assert body["eval_sets"][0]["criteria"][0]["items"] == ITEMS


def test_a_steady_judge_on_a_coin_flip_route_holds_none_of_it(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = noisy_project(tmp_path, sim, route_quality=0.5, noise=0.0)
    run_at(config, 1)

    body = variance_json(config, capsys)

    assert shares(body) == {"correctness": 0.0, "helpfulness": 0.0}


def test_both_spreads_are_told_apart_over_several_runs(
    tmp_path: Path, sim: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Right or wrong answers move a grade by 4 points, the judge's noise by 1 at times."""
    config = noisy_project(tmp_path, sim, route_quality=0.5, noise=0.3, db_url=db_url)
    for day in (1, 2, 3):
        run_at(config, day)

    body = variance_json(config, capsys, "--runs", "3")

    (found,) = body["eval_sets"]
    assert len(found["run_ids"]) == 3
    assert (found["route_samples"], found["judge_samples"]) == (3, 3)
    assert all(0.0 < share < 0.3 for share in shares(body).values())
    assert all(c["items"] == 3 * ITEMS for c in found["criteria"])


def test_the_text_report_shows_shares_and_the_noisiest_items(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = noisy_project(tmp_path, sim, route_quality=0.5, noise=0.3)
    run_at(config, 1)
    capsys.readouterr()

    assert run(["judge", "variance", "-c", str(config), "--route", "r"]) == 0

    out = capsys.readouterr().out
    assert "judge share" in out
    assert "most judge noise:" in out
    assert out.count("correctness") >= 2


@pytest.mark.parametrize(
    ("route", "judge", "says"),
    [
        ({"samples": 1}, {"judge_samples": 3}, "set `samples: 3` (or more) on route r"),
        ({"samples": 3}, {"judge_samples": 1}, "set `judge_samples: 3` (or more) on the judge"),
    ],
)
def test_runs_without_repeats_on_either_side_are_refused_with_the_fix(
    tmp_path: Path,
    sim: str,
    capsys: pytest.CaptureFixture[str],
    route: dict[str, int],
    judge: dict[str, int],
    says: str,
) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect", **route}}, judge=judge)
    run_at(config, 1)
    capsys.readouterr()

    assert run(["judge", "variance", "-c", str(config), "--route", "r"]) == 1

    assert says in capsys.readouterr().err


def test_a_route_without_runs_is_refused(
    tmp_path: Path, sim: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})
    run(["db", "upgrade", "-c", str(config)])

    assert run(["judge", "variance", "-c", str(config), "--route", "r"]) == 1

    assert "no completed run of route r" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--route", "nope"], "unknown route 'nope' for --route; known: r"),
        (["--route", "r", "--eval-set", "other"], "does not replay eval set 'other'"),
    ],
)
def test_an_unknown_route_or_eval_set_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    config = write_project(tmp_path, "http://127.0.0.1:9", {"r": {"model": "perfect"}})

    assert run(["judge", "variance", "-c", str(config), *args]) == 1

    assert says in capsys.readouterr().err
