"""Right and wrong answers to eval items, and the draws that choose them, without HTTP."""

import json
from typing import Any

import pytest

from routewatch.evalset import EvalSet
from routewatch.sim.answers import (
    VAGUE_ANSWER,
    AnswerBook,
    KnownItem,
    negate,
    prompt_key,
    unit,
    wrong_answer,
)
from routewatch.sim.scenario import Behaviour
from routewatch.sim.state import item_probability
from routewatch.sim.verdicts import matches

DRAWS = [i / 20 for i in range(20)]


def known(reference: str, *, schema: dict[str, Any] | None = None) -> KnownItem:
    return KnownItem(key="set/item", reference=reference, schema=schema, others=("Starter",))


def test_the_book_finds_an_item_by_its_exact_prompt(faq: EvalSet) -> None:
    book = AnswerBook({"support-faq": faq})
    item = faq.items[1]

    found = book.find((m.role, m.content) for m in item.prompt)

    assert found is not None
    assert found.key == f"support-faq/{item.id}"
    assert book.find([("user", "something else")]) is None


def test_prompt_keys_tell_roles_apart() -> None:
    assert prompt_key([("user", "hi")]) != prompt_key([("system", "hi")])


def test_no_wrong_answer_to_an_eval_item_is_judged_a_match(faq: EvalSet) -> None:
    book = AnswerBook({"support-faq": faq})
    for item in faq.items:
        entry = book.find((m.role, m.content) for m in item.prompt)
        assert entry is not None
        assert item.reference is not None
        for u in DRAWS:
            wrong = wrong_answer(entry, u)
            assert not matches(item.reference, wrong), (item.id, wrong)


def test_a_wrong_answer_with_numbers_changes_every_number() -> None:
    wrong = wrong_answer(known("Open 9:00 to 17:00, 5 days a week."), 0.0)

    assert wrong == "Open 10:01 to 18:01, 6 days a week."


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("You can ask within a month.", "You cannot ask within a month."),
        ("Phone support is open on Monday.", "Phone support is not open on Monday."),
        ("Go to Settings, then Billing.", "Do not go to Settings, then Billing."),
    ],
)
def test_negate_negates_the_first_auxiliary_or_the_imperative(text: str, negated: str) -> None:
    assert negate(text) == negated


def test_a_wrong_json_answer_is_valid_json_with_another_enum_value() -> None:
    schema = {"type": "object", "properties": {"status": {"enum": ["shipped", "pending"]}}}

    wrong = wrong_answer(known('{"order": "A-1", "status": "shipped"}', schema=schema), 0.9)

    assert json.loads(wrong) == {"order": "A-1", "status": "pending"}


def test_some_wrong_json_answers_are_broken_json() -> None:
    wrong = wrong_answer(known('{"order": "A-1", "status": "shipped"}', schema={}), 0.1)

    with pytest.raises(json.JSONDecodeError):
        json.loads(wrong)


def test_a_short_answer_is_never_negated() -> None:
    answers = {wrong_answer(known("Premium"), u) for u in DRAWS}

    assert answers == {"Starter", VAGUE_ANSWER}


def test_unit_draws_are_fixed_by_their_parts() -> None:
    assert unit(7, "m", "set/item", "2026-03-01", 0) == unit(7, "m", "set/item", "2026-03-01", 0)
    assert unit(7, "m", "set/item", "2026-03-01", 0) != unit(7, "m", "set/item", "2026-03-01", 1)


@pytest.mark.parametrize("quality", [0.0, 1.0])
def test_extreme_qualities_ignore_the_spread(quality: float) -> None:
    behaviour = Behaviour(quality=quality, spread=0.3)

    probabilities = {item_probability(behaviour, seed=1, key=f"s/{i}") for i in range(50)}

    assert probabilities == {quality}


def test_item_difficulty_spreads_around_the_quality() -> None:
    behaviour = Behaviour(quality=0.8, spread=0.1)

    probabilities = [item_probability(behaviour, seed=1, key=f"s/{i}") for i in range(400)]

    assert 0.7 <= min(probabilities) < 0.72
    assert 0.88 < max(probabilities) <= 0.9
    assert sum(probabilities) / len(probabilities) == pytest.approx(0.8, abs=0.01)
