"""`logprobs: true`: the probability-weighted (G-Eval) grade, and the integer when it cannot be."""

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import yaml
from judge_runs import CANARY, CRITERIA, ITEMS, judge_calls_at, judge_scores, run_at
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routewatch.config import Judge
from routewatch.judge.prompt import verdict_schema
from routewatch.judge.verdict import Verdict, weighted_grade
from routewatch.sim.server import serve_in_thread
from runner_project import faq_simulator, rows, write_project

SCALE = (1, 5)
SIM_WEIGHTED_5 = 4.756410256410256
"""The simulator's weighted grade for a written 5 with five alternatives (5, 4, 3, '"', 2)."""


def token(text: str, p: float, top: dict[str, float] | None = None) -> dict[str, Any]:
    alternatives = [{"token": t, "logprob": math.log(q)} for t, q in (top or {}).items()]
    return {"token": text, "logprob": math.log(p), "top_logprobs": alternatives}


def verdict_logprobs(grade: str, top: dict[str, float], reasoning: str = "Fine.") -> Any:
    """Tokens of ``{"reasoning": ..., "score": <grade>}``, the grade with ``top``."""
    return {
        "content": [
            token('{"', 1.0),
            token("reasoning", 1.0),
            token('":"', 1.0),
            token(reasoning, 1.0),
            token('","', 1.0),
            token("score", 1.0),
            token('":', 1.0),
            token(grade, top.get(grade.strip(), 0.5), top),
            token("}", 1.0),
        ]
    }


def test_the_grade_is_weighted_by_its_alternatives_renormalised() -> None:
    logprobs = verdict_logprobs("5", {"5": 0.6, "4": 0.3, '"': 0.1})

    found = weighted_grade(logprobs, Verdict(score=5, reasoning=""), SCALE)

    assert found.grade == pytest.approx((5 * 0.6 + 4 * 0.3) / 0.9)
    assert found.fallback is None
    assert found.mass == pytest.approx(0.9)


def test_grades_off_the_scale_carry_no_weight() -> None:
    logprobs = verdict_logprobs(" 1", {"1": 0.5, " 1": 0.2, "0": 0.2, "9": 0.1})

    found = weighted_grade(logprobs, Verdict(score=1, reasoning=""), SCALE)

    assert found.grade == pytest.approx(1.0)
    assert found.mass == pytest.approx(0.7)


def test_a_score_quoted_in_the_reasoning_is_not_the_grade_token() -> None:
    reasoning = 'It says \\"score\\": 2 but'
    logprobs = verdict_logprobs("4", {"4": 0.5, "3": 0.5}, reasoning=reasoning)

    found = weighted_grade(logprobs, Verdict(score=4, reasoning=""), SCALE)

    assert found.grade == pytest.approx(3.5)


def test_a_grade_written_as_score_colon_n_in_text_is_found() -> None:
    tokens = [token("Good", 1.0), token(" answer.", 1.0), token(" Score:", 1.0)]
    logprobs = {"content": [*tokens, token(" 4", 0.8, {" 4": 0.8, " 5": 0.2})]}

    found = weighted_grade(logprobs, Verdict(score=4, reasoning=""), SCALE)

    assert found.grade == pytest.approx(4.2)


@pytest.mark.parametrize(
    ("logprobs", "says"),
    [
        (None, "no logprobs"),
        ({"content": None}, "no tokens"),
        ({"content": []}, "no tokens"),
        ("garbage", "unexpected shape"),
        ([1, 2], "unexpected shape"),
        ({"content": "garbage"}, "unexpected shape: content"),
        ({"content": [{"token": 5, "logprob": 0}]}, "unexpected shape: content.0.token"),
        ({"content": [{"token": "5", "logprob": "high"}]}, "unexpected shape: content.0.logprob"),
        ({"content": [{"token": "5", "logprob": 0.7}]}, "unexpected shape: content.0.logprob"),
        ({"content": [{"token": "5", "logprob": math.nan}]}, "unexpected shape"),
        ({"content": [{"token": "5", "logprob": -0.1, "top_logprobs": None}]}, "unexpected"),
        (verdict_logprobs("3", {"3": 1.0}), "no token of its own carries the grade 5"),
        (verdict_logprobs("5}", {"5}": 1.0}), "no token of its own carries the grade 5"),
        (verdict_logprobs("5", {}), "no top_logprobs"),
    ],
)
def test_unusable_logprobs_give_the_integer_grade_and_say_why(logprobs: Any, says: str) -> None:
    found = weighted_grade(logprobs, Verdict(score=5, reasoning=""), SCALE)

    assert found.grade == 5.0
    assert found.fallback is not None
    assert says in found.fallback


def test_logprobs_are_off_unless_asked_for() -> None:
    assert Judge(provider="p", model="m").logprobs is False


@pytest.mark.parametrize(
    "params",
    [{"logprobs": False}, {"top_logprobs": 0}, {"top_logprobs": 21}, {"top_logprobs": "5"}],
)
def test_params_that_undo_logprobs_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="logprobs"):
        Judge(provider="p", model="m", logprobs=True, params=params)


def test_params_may_ask_for_fewer_alternatives() -> None:
    judge = Judge(provider="p", model="m", logprobs=True, params={"top_logprobs": 3})

    assert judge.params == {"top_logprobs": 3}


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with faq_simulator(tmp_path_factory.mktemp("sim")) as url:
        yield url


def ask_sim_judge(sim: str, **fields: Any) -> Any:
    body = {
        "model": "judge",
        "messages": [{"role": "user", "content": "<reference>1</reference><output>1</output>"}],
        "response_format": verdict_schema(SCALE),
        **fields,
    }
    response = httpx.post(f"{sim}/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]


def test_the_simulator_gives_logprobs_with_most_mass_on_the_written_grade(sim: str) -> None:
    choice = ask_sim_judge(sim, logprobs=True, top_logprobs=5)

    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
    (grade,) = [t for t in tokens if t["token"] == "5"]
    alternatives = [t["token"] for t in grade["top_logprobs"]]
    assert alternatives == ["5", "4", "3", '"', "2"]
    assert math.exp(grade["logprob"]) > 0.75


def test_the_simulator_gives_no_logprobs_unless_asked(sim: str) -> None:
    assert ask_sim_judge(sim)["logprobs"] is None


def test_the_simulated_judge_noise_moves_grades_one_step(sim: str) -> None:
    httpx.patch(f"{sim}/admin/models/judge", json={"grade_noise": 0.5}).raise_for_status()

    grades = {json.loads(ask_sim_judge(sim)["message"]["content"])["score"] for _ in range(30)}

    assert grades == {4, 5}


def test_the_weighted_grade_is_stored_instead_of_the_integer(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"logprobs": True})

    assert run_at(config, 1) == 0

    db = f"sqlite:///{tmp_path / 'rw.db'}"
    verdicts = rows(db, "judge_verdicts")
    assert len(verdicts) == ITEMS * CRITERIA
    for v in verdicts:
        assert v["raw_score"] == pytest.approx(SIM_WEIGHTED_5)
        assert v["samples"] == [v["raw_score"]]
        assert v["score"] == pytest.approx((SIM_WEIGHTED_5 - 1) / 4)
    assert {s["value"] for s in judge_scores(db)} == {verdicts[0]["score"]}


def test_turning_logprobs_on_judges_cached_outputs_again(tmp_path: Path, sim: str) -> None:
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}})
    run_at(config, 1)
    before = judge_calls_at(sim)
    write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"logprobs": True})

    run_at(config, 2)

    assert judge_calls_at(sim) - before == ITEMS * CRITERIA + CANARY


class FakeJudge:
    """A judge endpoint that always grades 4 and sends ``logprobs`` as given."""

    def __init__(self, logprobs: Any) -> None:
        self.logprobs = logprobs
        self.bodies: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.reply, methods=["POST"])])

    async def reply(self, request: Request) -> JSONResponse:
        self.bodies.append(await request.json())
        content = json.dumps({"reasoning": "Mostly right.", "score": 4})
        choice = {"index": 0, "message": {"role": "assistant", "content": content}}
        choice |= {"finish_reason": "stop", "logprobs": self.logprobs}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        return JSONResponse({"model": "fake", "choices": [choice], "usage": usage})


def judge_on(tmp_path: Path, sim: str, fake_url: str) -> Path:
    """A project whose route is on the simulator and whose judge (logprobs on) is ``fake_url``."""
    config = write_project(tmp_path, sim, {"r": {"model": "perfect"}}, judge={"logprobs": True})
    data = yaml.safe_load(config.read_text())
    data["providers"]["fake"] = {**data["providers"]["sim"], "base_url": f"{fake_url}/v1"}
    data["judges"]["default"]["provider"] = "fake"
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.parametrize(
    ("logprobs", "says"),
    [
        (None, "the reply carried no logprobs"),
        ({"content": "not a list"}, "logprobs of an unexpected shape: content"),
        ({"content": [{"token": "4"}]}, "logprobs of an unexpected shape: content.0.logprob"),
    ],
)
def test_a_reply_without_usable_logprobs_counts_its_integer_grade(
    tmp_path: Path, sim: str, logprobs: Any, says: str
) -> None:
    fake = FakeJudge(logprobs)
    with serve_in_thread(fake.app) as url:
        config = judge_on(tmp_path, sim, url)

        assert run_at(config, 1) == 0

    verdicts = rows(f"sqlite:///{tmp_path / 'rw.db'}", "judge_verdicts")
    assert len(verdicts) == ITEMS * CRITERIA
    assert {(v["raw_score"], v["score"]) for v in verdicts} == {(4.0, 0.75)}
    assert all(says in v["reasoning"] for v in verdicts)
    assert {(b["logprobs"], b["top_logprobs"]) for b in fake.bodies} == {(True, 5)}


def test_a_canary_one_written_grade_off_is_not_drift_though_its_weight_is_further(
    tmp_path: Path,
) -> None:
    """The canary compares the grade the judge wrote: a written 4 for an expected 5 is
    a one-grade wobble, even though its weighted grade (about 3.93) is further off."""
    from routewatch.evalset import load_eval_set
    from routewatch.scaffold import EVAL_TEMPLATE, template_text
    from routewatch.sim.app import create_app
    from routewatch.sim.scenario import parse_scenario
    from runner_project import SIM_SCENARIO

    (tmp_path / "sim").mkdir()
    evals = tmp_path / "sim" / EVAL_TEMPLATE
    evals.write_text(template_text(EVAL_TEMPLATE))
    models = {**SIM_SCENARIO["models"], "wobbly-judge": {"quality": 1.0, "grade_noise": 1.0}}
    app = create_app(
        parse_scenario({**SIM_SCENARIO, "models": models}),
        {"support-faq": load_eval_set(evals)},
    )
    with serve_in_thread(app) as url:
        config = write_project(
            tmp_path,
            url,
            {"r": {"model": "perfect"}},
            judge={"model": "wobbly-judge", "logprobs": True},
        )
        assert run_at(config, 1) == 0

    db = f"sqlite:///{tmp_path / 'rw.db'}"
    (canary,) = rows(db, "canary_results")
    assert canary["expected"] == 5
    assert 3.5 < canary["observed"] < 4.0, "the weighted grade of a written 4"
    assert [r["judge_suspect"] for r in rows(db, "runs")] == [False]
