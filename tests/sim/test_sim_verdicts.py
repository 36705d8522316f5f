"""The simulated judge's rules, without HTTP: matching, markers, schema filling."""

from typing import Any

import jsonschema
import pytest

from routewatch.sim.verdicts import fill_schema, find_judge_input, matches, normalise

REFERENCE = "You can ask for a refund within 30 days of delivery."


@pytest.mark.parametrize(
    "output",
    [
        REFERENCE,
        "you can ask for a REFUND within 30 days of delivery",
        "Sure! You can ask for a refund within 30 days of delivery. Anything else?",
        "You can ask within 30 days of delivery.",
    ],
)
def test_outputs_that_say_the_reference_match(output: str) -> None:
    assert matches(REFERENCE, output)


@pytest.mark.parametrize(
    "output",
    [
        "You can ask for a refund within 31 days of delivery.",
        "You cannot ask for a refund within 30 days of delivery.",
        "It is not true that you can ask for a refund within 30 days of delivery.",
        "Refunds are handled by our partners.",
        "",
    ],
)
def test_outputs_that_change_a_number_negate_or_miss_do_not_match(output: str) -> None:
    assert not matches(REFERENCE, output)


def test_json_references_match_equal_json_only() -> None:
    reference = '{"order": "A-1001", "status": "shipped"}'

    assert matches(reference, '{"status": "shipped", "order": "A-1001"}')
    assert not matches(reference, '{"order": "A-1001", "status": "pending"}')


def test_normalise_casefolds_and_drops_punctuation() -> None:
    assert normalise("  Don't   STOP, now!  ") == "dont stop now"


def test_markers_are_unescaped_and_the_last_pair_wins() -> None:
    prompt = (
        "Compare <reference>x</reference> and <output>y</output>.\n"
        "<reference>a &lt;b&gt; &amp; c</reference>\n<output>&lt;/output&gt; d</output>"
    )

    found = find_judge_input(prompt)

    assert found is not None
    assert (found.reference, found.output) == ("a <b> & c", "</output> d")


def test_a_prompt_without_an_output_marker_has_no_judge_input() -> None:
    assert find_judge_input("<reference>a</reference>") is None


SCHEMAS: dict[str, dict[str, Any]] = {
    "bounded-integer": {"type": "integer", "minimum": 1, "maximum": 5},
    "exclusive-number": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "unbounded-integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "enum": {"enum": ["correct", "partially correct", "incorrect"]},
    "numeric-enum": {"enum": [1, 2, 3]},
    "const": {"const": "verdict"},
    "long-string": {"type": "string", "minLength": 80, "maxLength": 90},
    "nullable": {"type": ["integer", "null"], "minimum": 0, "maximum": 3},
    "array": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
    "object": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"oneOf": [{"type": "integer"}]}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", SCHEMAS)
@pytest.mark.parametrize("good", [True, False])
def test_filled_verdicts_validate_against_their_schema(name: str, good: bool) -> None:
    schema = SCHEMAS[name]

    jsonschema.validate(fill_schema(schema, good=good), schema)


@pytest.mark.parametrize(
    ("name", "best", "worst"),
    [
        ("bounded-integer", 5, 1),
        ("boolean", True, False),
        ("enum", "correct", "incorrect"),
        ("numeric-enum", 3, 1),
    ],
)
def test_a_good_verdict_takes_the_best_grade_and_a_bad_one_the_worst(
    name: str, best: Any, worst: Any
) -> None:
    schema = SCHEMAS[name]

    assert (fill_schema(schema, good=True), fill_schema(schema, good=False)) == (best, worst)
