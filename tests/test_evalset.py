import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from routewatch.errors import EvalSetError
from routewatch.evalset import EvalSet, load_eval_dir, load_eval_set, read_eval_dir

BASE = """\
name: faq
description: first
criteria: {correctness: Agrees with the reference.}
items:
  - id: a
    input: Question A?
    reference: Answer A
    checks: [{contains: "A"}, {max_chars: 100}]
    tags: [x]
  - id: b
    input: Question B?
    checks: [{regex: "^B"}]
"""


def write(tmp_path: Path, text: str, name: str = "faq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, name: str = "faq.yaml") -> EvalSet:
    return load_eval_set(write(tmp_path, text, name))


def test_version_ignores_comments_description_tags_and_order(tmp_path: Path) -> None:
    reordered = """\
# a comment
items:
  - checks: [{regex: "^B"}]
    input: Question B?
    id: b
  - {id: a, reference: Answer A, input: "Question A?", tags: [y, z],
     checks: [{max_chars: 100}, {contains: "A"}]}
criteria: {correctness: Agrees with the reference.}
description: second
name: faq
"""
    assert load(tmp_path, BASE).version == load(tmp_path, reordered).version


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Answer A", "Answer AA"),
        ('{contains: "A"}', '{contains: "a"}'),
        ("Agrees with the reference.", "Agrees."),
        ("id: b", "id: c"),
    ],
)
def test_version_changes_with_what_affects_scoring(tmp_path: Path, old: str, new: str) -> None:
    assert load(tmp_path, BASE).version != load(tmp_path, BASE.replace(old, new)).version


def test_item_hash_survives_edits_to_other_items(tmp_path: Path) -> None:
    before = {i.id: i.hash for i in load(tmp_path, BASE).items}
    after = {i.id: i.hash for i in load(tmp_path, BASE.replace("Question B?", "B?")).items}

    assert before["a"] == after["a"]
    assert before["b"] != after["b"]


def test_input_shorthand_hashes_like_one_user_message(tmp_path: Path) -> None:
    long_form = BASE.replace(
        "input: Question A?", "messages: [{role: user, content: 'Question A?'}]"
    )

    assert load(tmp_path, BASE).items[0].hash == load(tmp_path, long_form).items[0].hash


def test_jsonl_loads_with_set_header_and_reports_lines(tmp_path: Path) -> None:
    lines = [
        {"eval_set": {"description": "d", "pass_threshold": 0.5}},
        {"id": "a", "input": "Q?", "checks": [{"contains": "x"}]},
        {"id": "b", "input": "Q?", "checks": [{"regex": "("}]},
    ]
    path = write(tmp_path, "\n".join(json.dumps(x) for x in lines), "faq.jsonl")

    with pytest.raises(EvalSetError) as info:
        load_eval_set(path)

    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (3, "items[1].checks[0]")


def test_jsonl_reports_bad_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "a", "input": "Q"}\n{"id": "b",\n', "faq.jsonl")

    with pytest.raises(EvalSetError, match=r"faq.jsonl:2: \(file\): invalid JSON"):
        load_eval_set(path)


def test_jsonl_refuses_a_key_named_twice_on_a_line(tmp_path: Path) -> None:
    """The last "input" would win silently: another reader could keep the first."""
    path = write(
        tmp_path,
        '{"id": "a", "input": "Q"}\n{"id": "b", "input": "x", "input": "y"}\n',
        "faq.jsonl",
    )

    with pytest.raises(EvalSetError) as raised:
        load_eval_set(path)

    assert [str(p) for p in raised.value.problems] == [
        f"{path}:2: (file): key 'input' appears twice"
    ]


@pytest.mark.parametrize("name", ["faq.yaml", "faq.jsonl"])
def test_a_set_whose_only_item_is_bad_reports_that_item_alone(tmp_path: Path, name: str) -> None:
    """Not also "items: needs at least 1 entry": the entry is there, and wrong."""
    item = {"id": "a", "input": "Q", "checks": [{"contanis": "x"}]}
    text = json.dumps(item) if name.endswith("jsonl") else yaml.safe_dump({"items": [item]})
    path = write(tmp_path, text, name)

    with pytest.raises(EvalSetError) as raised:
        load_eval_set(path)

    (problem,) = raised.value.problems
    assert "items[0].checks[0]: unknown check kind 'contanis'" in str(problem)


def test_jsonl_and_yaml_of_the_same_set_share_a_version(tmp_path: Path) -> None:
    items = [{"id": "a", "input": "Q?", "checks": [{"equals": "A"}]}]
    jsonl = write(tmp_path, "\n".join(json.dumps(i) for i in items), "faq.jsonl")
    yaml_dir = tmp_path / "y"
    yaml_dir.mkdir()
    yml = write(yaml_dir, "items:\n  - {id: a, input: 'Q?', checks: [{equals: A}]}\n")

    assert load_eval_set(jsonl).version == load_eval_set(yml).version


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{json_schema: {type: objekt}}", "not a valid JSON schema"),
        ("{json_schema: not-a-map}", "takes a JSON schema"),
        ("{max_chars: -1}", "whole number of characters"),
        ("{contains: 3}", "takes a string"),
        ("{contains: a, regex: b}", "exactly one key"),
    ],
)
def test_bad_checks_are_refused(tmp_path: Path, check: str, message: str) -> None:
    text = BASE.replace("{max_chars: 100}", check)

    with pytest.raises(EvalSetError, match=message) as info:
        load(tmp_path, text)

    assert info.value.problems[0].field == "items[0].checks[1]"


def test_input_and_messages_together_are_refused(tmp_path: Path) -> None:
    text = BASE.replace("input: Question B?", "input: Q\n    messages: [{role: user, content: Q}]")

    with pytest.raises(
        EvalSetError, match=r"items\[1\]: give exactly one of `input` or `messages`"
    ):
        load(tmp_path, text)


@pytest.mark.parametrize("empty", ['""', '"  "'])
def test_an_empty_input_is_refused(tmp_path: Path, empty: str) -> None:
    with pytest.raises(EvalSetError, match=r"items\[1\]: `input` is empty"):
        load(tmp_path, BASE.replace("input: Question B?", f"input: {empty}"))


def test_name_must_match_the_file(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match="'faq' must match the file name 'other'"):
        load(tmp_path, BASE, "other.yaml")


def test_human_score_outside_scale_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("tags: [x]", "tags: [x]\n    human_score: 9")

    with pytest.raises(EvalSetError, match=r"9\.0 is outside scale"):
        load(tmp_path, text)


def test_canary_with_unknown_criterion_is_refused(tmp_path: Path) -> None:
    text = BASE + "canaries:\n  - {input: Q, output: O, expect: {tone: 5}}\n"

    with pytest.raises(EvalSetError, match="unknown criterion 'tone'"):
        load(tmp_path, text)


def test_eval_dir_collects_problems_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("id: b", "id: a"), "faq.yaml")
    write(tmp_path, "items: [}", "two.yaml")

    with pytest.raises(EvalSetError) as info:
        load_eval_dir(tmp_path)

    assert {p.path.rsplit("/", 1)[-1] for p in info.value.problems} == {"faq.yaml", "two.yaml"}


def test_history_key_is_the_item_hash_for_checks_at_the_default_threshold(tmp_path: Path) -> None:
    checks_only = load(
        tmp_path, BASE.replace("criteria: {correctness: Agrees with the reference.}\n", "")
    )

    assert [checks_only.history_key(i) for i in checks_only.items] == [
        i.hash for i in checks_only.items
    ]


@pytest.mark.parametrize(
    ("old", "new", "same"),
    [
        ("description: first", "description: second", True),
        ("    tags: [x]", "    tags: [y]", True),
        ("Agrees with the reference.", "Agrees word for word.", False),
        ("description: first", "description: first\nscale: [1, 10]", False),
        ("description: first", "description: first\npass_threshold: 0.9", False),
    ],
)
def test_history_key_follows_the_scoring_rules(
    tmp_path: Path, old: str, new: str, same: bool
) -> None:
    before, after = load(tmp_path, BASE), load(tmp_path, BASE.replace(old, new))

    keys = [
        (before.history_key(a), after.history_key(b))
        for a, b in zip(before.items, after.items, strict=True)
    ]

    assert all((k1 == k2) is same for k1, k2 in keys)
    assert [a.hash for a in after.items] == [b.hash for b in before.items]


GOLDEN = """\
name: faq
criteria: {correctness: Agrees with the reference.}
items:
  - id: a
    input: "Qüestion A? ✓"
    reference: Answer A
    checks: [{contains: "A"}, {max_chars: 100}, {json_schema: {type: object, required: [x]}}]
    weight: 2.5
  - id: b
    messages: [{role: system, content: Be brief.}, {role: user, content: "Question B?"}]
    checks: [{regex: "^B"}]
"""


def test_version_and_item_hashes_never_change_for_the_same_file(tmp_path: Path) -> None:
    # Stored runs, baselines and item histories are keyed by these hashes: a change in
    # how they are computed would orphan every history. Values as first stored.
    evalset = load(tmp_path, GOLDEN)

    assert evalset.version == "ee4ed43cc6067152"
    assert [item.hash for item in evalset.items] == ["c1141f14ce29ba6b", "a534fe9597a34e75"]
    assert [evalset.history_key(item) for item in evalset.items] == [
        "0b958a084b7747ec",
        "bd9389f99dba5bef",
    ]


def test_source_digest_follows_the_exact_file_and_its_judge_template(tmp_path: Path) -> None:
    first, again = load(tmp_path, BASE), load(tmp_path, BASE)
    commented = load(tmp_path, "# a comment\n" + BASE)
    (tmp_path / "judge.j2").write_text("Grade <output>{{ output }}</output>")
    templated = BASE + "judge_template: judge.j2\n"
    with_template = load(tmp_path, templated)
    (tmp_path / "judge.j2").write_text("Grade strictly <output>{{ output }}</output>")
    template_edited = load(tmp_path, templated)

    assert first.source_digest is not None
    assert again.source_digest == first.source_digest
    # Same version, other text: a digest of its own (both stand for that version).
    assert commented.version == first.version
    assert commented.source_digest != first.source_digest
    assert with_template.source_digest != first.source_digest
    assert template_edited.source_digest != with_template.source_digest
    built = EvalSet.model_validate({"name": "faq", "items": [{"id": "a", "input": "Q?"}]})
    assert built.source_digest is None


@pytest.mark.parametrize(
    "name",
    [
        "routewatch.evalset.HASH_RECIPE",
        "routewatch.evalset.__version__",
        "routewatch.evalset.PYDANTIC_VERSION",
        "yaml.__version__",
    ],
)
def test_source_digest_changes_with_the_hash_recipe_and_the_parsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    before = load(tmp_path, BASE).source_digest
    monkeypatch.setattr(name, "test-version")

    assert load(tmp_path, BASE).source_digest != before


def test_adopted_hashes_are_what_the_set_reports(tmp_path: Path) -> None:
    computed = load(tmp_path, BASE)
    adopting = load(tmp_path, BASE)

    adopting.adopt_hashes("v" * 16, {"a": "a" * 16, "b": "b" * 16})

    assert adopting.version == "v" * 16
    assert [i.hash for i in adopting.items] == ["a" * 16, "b" * 16]
    assert adopting.history_key(adopting.items[0]) != computed.history_key(computed.items[0])


def test_adopting_hashes_computed_already_keeps_them(tmp_path: Path) -> None:
    evalset = load(tmp_path, BASE)
    version, hashes = evalset.version, [i.hash for i in evalset.items]

    evalset.adopt_hashes("v" * 16, {"a": "a" * 16, "b": "b" * 16})

    assert evalset.version == version
    assert [i.hash for i in evalset.items] == hashes


@pytest.mark.parametrize(
    "stored", [{"a": "a" * 16}, {"a": "a" * 16, "b": "b" * 16, "c": "c" * 16}, {"a": "a", "c": "c"}]
)
def test_adopting_hashes_of_other_items_is_refused(tmp_path: Path, stored: dict[str, str]) -> None:
    evalset = load(tmp_path, BASE)

    with pytest.raises(ValueError, match="do not match eval set faq"):
        evalset.adopt_hashes("v" * 16, stored)
    assert "version" not in evalset.__dict__


def test_a_date_like_reference_is_text_even_when_no_date(tmp_path: Path) -> None:
    """`2026-13-01` made PyYAML raise ValueError, and validate end in a traceback."""
    evalset = load(tmp_path, BASE.replace("reference: Answer A", "reference: 2026-13-01"))

    assert evalset.items[0].reference == "2026-13-01"


def test_an_eval_folder_that_cannot_be_read_is_a_located_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Denied permission cannot be arranged as root: iterdir is made to refuse, as the
    kernel would for another user."""
    folder = tmp_path / "evals"
    folder.mkdir()
    real = Path.iterdir

    def refuse(self: Path) -> Any:
        if self == folder:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", refuse)

    found = read_eval_dir(folder)

    assert found.sets == {}
    (problem,) = found.problems
    assert "cannot read the eval folder: Permission denied" in str(problem)
