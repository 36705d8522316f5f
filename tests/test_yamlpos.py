"""The located YAML loader: what it refuses, where it says the problem is, what it keeps."""

from __future__ import annotations

import pytest
import yaml

from routewatch._yamlpos import YamlSyntaxError, _SafeLoader, load_yaml

BOMB = "a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: b\x01c\n", 1, "character #x0001 is not allowed"),
        ("a: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64 levels deep"),
        ("a: [1, 2\nb: 3\nc: 4\n", 2, "flow sequence that began at line 1"),
        ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
        ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
        ("a:\n\tb: 1\n", 2, "cannot start any token"),
        ("[1, 2]: x\n", 1, "a key must be a plain value"),
        (BOMB, 1, "aliases expanding?"),
        ("a: 1\nb: !!int abc\n", 2, "cannot read 'abc' as !!int"),
        ("a: !!bool maybe\n", 1, "cannot read 'maybe' as !!bool"),
        ('a: !!int ""\n', 1, "cannot read '' as !!int"),
        ('a: !!float ""\n', 1, "cannot read '' as !!float"),
        ("a: !!python/name:os.system x\n", 1, "could not determine a constructor"),
    ],
)
def test_bad_yaml_is_refused_with_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text, "f.yaml")

    assert caught.value.problem.line == line
    assert message in caught.value.problem.message


def test_values_keep_their_lines_merge_keys_and_dates_as_text() -> None:
    located = load_yaml("x: &x {a: 1}\ny:\n  <<: *x\n  b: 2\nd: 2026-01-01\n", "f.yaml")

    assert located.data == {"x": {"a": 1}, "y": {"a": 1, "b": 2}, "d": "2026-01-01"}
    assert located.lines.line(("y", "b")) == 4
    assert located.lines.line(("d",)) == 5


def test_date_like_text_that_is_no_date_is_kept_as_written() -> None:
    """PyYAML raised ValueError building a date from these; every command crashed."""
    text = "a: 2026-13-01\nb: 2025-02-29\nc: 2026-01-01 25:00:00\nd: 2026-01-01T06:00:00Z\n"

    assert load_yaml(text, "f.yaml").data == {
        "a": "2026-13-01",
        "b": "2025-02-29",
        "c": "2026-01-01 25:00:00",
        "d": "2026-01-01T06:00:00Z",
    }


def test_libyaml_parses_when_pyyaml_has_it() -> None:
    # Eight times faster on a 1,000-item eval set; PyYAML's wheels include it.
    assert (_SafeLoader.__name__ == "CSafeLoader") == yaml.__with_libyaml__
