import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routewatch.checks import DETAIL_LIMIT, REGEX_TIMEOUT_S, CheckResult, run_check, run_checks
from routewatch.evalset import Check, CheckKind

STATUS_SCHEMA = {
    "type": "object",
    "properties": {"status": {"enum": ["ok", "late"]}},
    "required": ["status"],
}


def check(kind: str, arg: Any) -> Check:
    return Check.model_validate({kind: arg})


@pytest.mark.parametrize(
    ("kind", "arg", "output", "detail"),
    [
        ("contains", "30 days", "You have 30 days.", ""),
        ("contains", "30 days", "You have 30 Days.", "missing '30 days'"),
        ("not_contains", "I don't know", "Within 30 days.", ""),
        ("not_contains", "I don't know", "Sorry, I don't know.", 'contains "I don\'t know"'),
        ("icontains", "REFUND", "a refund is due", ""),
        ("icontains", "STRASSE", "Hauptstraße 5", ""),
        ("icontains", "refund", "no money back", "missing 'refund' (ignoring case)"),
        ("regex", r"\b30\b", "within 30 days", ""),
        ("regex", r"\b30\b", "within 300 days", r"no match for `\b30\b`"),
        ("regex", "^Yes", "Yes, you can.", ""),
        ("regex", "^Yes", "Well, Yes.", "no match for `^Yes`"),
        ("regex", "^B", "A\nB", "no match for `^B`"),
        ("regex", "(?m)^B$", "A\nB\nC", ""),
        ("equals", "42", "  42\n", ""),
        ("equals", "42", "42.", "expected '42', got '42.'"),
        ("max_chars", 5, "12345", ""),
        ("max_chars", 5, "  12345\n\n", ""),
        ("max_chars", 600, "x" * 612, "612 characters > 600"),
        ("min_chars", 3, "abc", ""),
        ("min_chars", 3, " ab \n", "2 characters < 3"),
    ],
)
def test_text_and_count_checks(kind: str, arg: Any, output: str, detail: str) -> None:
    result = run_check(check(kind, arg), output)

    assert (result.passed, result.detail) == (detail == "", detail)


@pytest.mark.parametrize(
    ("output", "detail"),
    [
        ('{"status": "ok"}', ""),
        ('\n  {"status": "ok"}  \n', ""),
        ('```json\n{"status": "ok"}\n```', ""),
        ('Here it is:\n```\n{"status": "late"}\n```\nAnything else?', ""),
        ('```json\n{"status": "ok"}\n```\n```json\n{}\n```', ""),
        ('{"status": "ok"}\nHope this helps!', "not JSON: Extra data at line 2 column 1"),
        ("The status is ok.", "no JSON found"),
        ("", "no JSON found"),
        ('{"status": "ok"', "not JSON: Expecting ',' delimiter at line 1 column 16"),
        (
            "```json\n{status: ok}\n```",
            "not JSON: Expecting property name enclosed in double quotes"
            " at line 1 column 2 (in the code block)",
        ),
        ("{}", "JSON does not match schema: 'status' is a required property"),
        (
            '{"status": "lost"}',
            "JSON does not match schema: 'lost' is not one of ['ok', 'late'] at $.status",
        ),
        ("[1, 2]", "JSON does not match schema: [1, 2] is not of type 'object'"),
    ],
)
def test_json_schema_check(output: str, detail: str) -> None:
    result = run_check(check("json_schema", STATUS_SCHEMA), output)

    assert (result.passed, result.detail) == (detail == "", detail)


def test_json_schema_ignores_formats() -> None:
    schema = {"type": "string", "format": "email"}

    assert run_check(check("json_schema", schema), '"not an email"').passed


def test_json_schema_never_fetches_a_remote_ref() -> None:
    schema = {"$ref": "https://example.invalid/schema.json"}

    result = run_check(check("json_schema", schema), "{}")

    assert not result.passed
    assert result.detail.startswith("schema $ref cannot be resolved")


def test_json_schema_resolves_local_refs() -> None:
    schema = {"$defs": {"id": {"type": "integer"}}, "items": {"$ref": "#/$defs/id"}}

    assert run_check(check("json_schema", schema), "[1, 2]").passed
    assert not run_check(check("json_schema", schema), '[1, "2"]').passed


@pytest.mark.parametrize(
    ("output", "detail"),
    [
        ("[" * 100_000 + "]" * 100_000, "not JSON: nested too deeply"),
        ("1" * 5_000, "no JSON found"),
    ],
)
def test_json_schema_survives_hostile_output(output: str, detail: str) -> None:
    assert run_check(check("json_schema", {}), output).detail == detail


def test_schema_error_keeps_its_reason_when_the_value_is_long() -> None:
    output = json.dumps(["x" * 1_000])

    result = run_check(check("json_schema", {"type": "object"}), output)

    assert result.detail.endswith("is not of type 'object'")
    assert len(result.detail) <= DETAIL_LIMIT


def test_detail_is_clipped() -> None:
    result = run_check(check("contains", "y" * 1_000), "x")

    assert len(result.detail) <= DETAIL_LIMIT


def test_scorer_names_kind_and_position() -> None:
    result = CheckResult(kind=CheckKind.max_chars, index=3, passed=True, detail="")

    assert result.scorer == "check:max_chars:3"


def test_run_checks_keeps_order_and_positions() -> None:
    checks = [check("contains", "a"), check("max_chars", 1), check("contains", "z")]

    results = run_checks(checks, "ab")

    assert [(r.kind, r.index, r.passed) for r in results] == [
        (CheckKind.contains, 0, True),
        (CheckKind.max_chars, 1, False),
        (CheckKind.contains, 2, False),
    ]


SCHEMAS = [
    {},
    STATUS_SCHEMA,
    {"type": "array", "items": {"type": "number"}, "maxItems": 3},
    {"$defs": {"s": {"type": "string"}}, "additionalProperties": {"$ref": "#/$defs/s"}},
    {"$ref": "https://example.invalid/remote.json"},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
checks = st.one_of(
    st.builds(
        check,
        st.sampled_from(["contains", "not_contains", "icontains", "equals"]),
        st.text(),
    ),
    st.builds(check, st.just("regex"), st.sampled_from([r"\d+", "^a", "b$", "(?i)x|y", ""])),
    st.builds(check, st.sampled_from(["max_chars", "min_chars"]), st.integers(0, 10_000)),
    st.builds(check, st.just("json_schema"), st.sampled_from(SCHEMAS)),
)
outputs = st.one_of(
    st.text(),
    json_values.map(json.dumps),
    st.tuples(st.text(), json_values, st.text()).map(
        lambda t: f"{t[0]}\n```json\n{json.dumps(t[1])}\n```\n{t[2]}"
    ),
)


@given(checks, outputs)
def test_any_check_on_any_output_gives_a_result(c: Check, output: str) -> None:
    result = run_check(c, output, index=7)

    assert (result.kind, result.index) == (c.kind, 7)
    assert result.passed == (result.detail == "")
    assert len(result.detail) <= DETAIL_LIMIT


@given(st.text(), st.text())
def test_not_contains_is_the_opposite_of_contains(arg: str, output: str) -> None:
    contains = run_check(check("contains", arg), output)
    not_contains = run_check(check("not_contains", arg), output)

    assert contains.passed != not_contains.passed


@given(st.text(), st.text())
def test_icontains_passes_whenever_contains_does(arg: str, output: str) -> None:
    if run_check(check("contains", arg), output).passed:
        assert run_check(check("icontains", arg), output).passed


@given(json_values, st.text().filter(lambda s: "```" not in s), st.booleans())
def test_any_json_passes_the_empty_schema(value: Any, prose: str, fenced: bool) -> None:
    text = json.dumps(value)
    output = f"{prose}\n```json\n{text}\n```" if fenced else text

    assert run_check(check("json_schema", {}), output).passed


def test_a_regex_that_backtracks_without_end_gives_up_and_fails_saying_so() -> None:
    """A model's output is untrusted: on `(a|aa)+$`, 40 a's and a '!' take Python's `re`
    about 30 s (50 a's an hour); the check stops after REGEX_TIMEOUT_S and fails."""
    check = Check(kind=CheckKind.regex, arg="(a|aa)+$")
    started = time.perf_counter()

    result = run_check(check, "a" * 40 + "!")

    assert time.perf_counter() - started < REGEX_TIMEOUT_S * 8
    assert not result.passed
    assert f"gave up after {REGEX_TIMEOUT_S:g} s" in (result.detail or "")


def test_a_regex_still_matches_as_python_patterns_do() -> None:
    check = Check(kind=CheckKind.regex, arg=r"\b(\d{2,3}) days\b")

    assert run_check(check, "within 30 days of delivery").passed
    assert not run_check(check, "within thirty days").passed
