"""``judge_samples: n``: n verdicts per output and criterion, averaged, cached as one."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from judge_runs import CANARY, CRITERIA, ITEMS, judge_calls_at, run_at

from runner_project import faq_simulator, rows, write_project


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def test_each_criterion_is_judged_n_times_on_the_first_run(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"judge_samples": 3})

    assert run_at(config, 1) == 0

    assert judge_calls_at(sim) == (ITEMS * CRITERIA + CANARY) * 3
    (run_row,) = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")
    assert run_row["judge_calls"] == (ITEMS * CRITERIA + CANARY) * 3


def test_a_rerun_of_unchanged_outputs_judges_only_the_canary(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"judge_samples": 3})
    run_at(config, 1)
    before = judge_calls_at(sim)

    run_at(config, 2)

    assert judge_calls_at(sim) - before == CANARY * 3
    second = rows(f"sqlite:///{tmp_path / 'rw.db'}", "runs")[1]
    assert (second["judge_calls"], second["judge_calls_saved"]) == (CANARY * 3, ITEMS * CRITERIA)


def test_the_verdict_keeps_every_sample_and_scores_their_mean(tmp_path: Path, sim: str) -> None:
    """At quality 0.5 the simulated judge is right or wrong at random: samples differ."""
    httpx.patch(f"{sim}/admin/models/judge", json={"quality": 0.5}).raise_for_status()
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"judge_samples": 3})

    run_at(config, 1)

    verdicts = rows(f"sqlite:///{tmp_path / 'rw.db'}", "judge_verdicts")
    assert len(verdicts) == ITEMS * CRITERIA
    for v in verdicts:
        assert len(v["samples"]) == 3
        assert v["raw_score"] == sum(v["samples"]) / 3
        assert v["score"] == sum((s - 1) / 4 for s in v["samples"]) / 3
    assert any(len(set(v["samples"])) > 1 for v in verdicts)


def test_changing_judge_samples_judges_the_outputs_again(tmp_path: Path, sim: str) -> None:
    """A mean of three verdicts is not a cached single one: n is part of the cache key."""
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})
    run_at(config, 1)
    before = judge_calls_at(sim)
    write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"judge_samples": 2})

    run_at(config, 2)

    assert judge_calls_at(sim) - before == (ITEMS * CRITERIA + CANARY) * 2


def test_one_sample_is_stored_as_a_list_of_one(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})

    run_at(config, 1)

    verdicts = rows(f"sqlite:///{tmp_path / 'rw.db'}", "judge_verdicts")
    assert {tuple(v["samples"]) for v in verdicts} == {(5,)}
