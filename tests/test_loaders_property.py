"""The loaders either load or raise InputError, whatever the file holds."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routewatch.config import load_config
from routewatch.errors import InputError
from routewatch.evalset import load_eval_set
from routewatch.scaffold import CONFIG_TEMPLATE, EVAL_TEMPLATE, template_text

CONFIG_TEXT = template_text(CONFIG_TEMPLATE)
EVAL_TEXT = template_text(EVAL_TEMPLATE)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KEYS = [
    "items",
    "id",
    "input",
    "checks",
    "contains",
    "regex",
    "routes",
    "providers",
    "chain",
    "policies",
    "schedule",
    "price",
    "weight",
    "scale",
    "evals",
    "base_url",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(KEYS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "swap", "char", "value"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "char" and lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = (
                lines[i][:k]
                + draw(st.sampled_from(list(":-[]{}'\"#&*!|> \t\\0a")))
                + lines[i][k + 1 :]
            )
        elif action == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {json.dumps(draw(values))}"
    return "\n".join(lines) + "\n"


def only_input_errors(loader: Any, path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        loader(path)
    except InputError as exc:
        problems = exc.problems
    else:
        return
    assert problems
    for problem in problems:
        assert path.name in problem.path


def load_cfg(path: Path) -> Any:
    return load_config(path, {})


@SETTINGS
@given(text=mutated(CONFIG_TEXT))
def test_mutated_config_loads_or_raises_input_error(tmp_path: Path, text: str) -> None:
    only_input_errors(load_cfg, tmp_path / "routewatch.yaml", text)


@SETTINGS
@given(text=mutated(EVAL_TEXT))
def test_mutated_eval_set_loads_or_raises_input_error(tmp_path: Path, text: str) -> None:
    only_input_errors(load_eval_set, tmp_path / "support-faq.yaml", text)


@SETTINGS
@given(data=values)
def test_random_yaml_documents_load_or_raise_input_error(tmp_path: Path, data: Any) -> None:
    text = yaml.safe_dump(data)
    only_input_errors(load_cfg, tmp_path / "routewatch.yaml", text)
    only_input_errors(load_eval_set, tmp_path / "support-faq.yaml", text)


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_text_loads_or_raises_input_error(tmp_path: Path, text: str) -> None:
    only_input_errors(load_cfg, tmp_path / "routewatch.yaml", text)
    only_input_errors(load_eval_set, tmp_path / "faq.yaml", text)
    only_input_errors(load_eval_set, tmp_path / "faq.jsonl", text)


@SETTINGS
@given(items=st.lists(values, max_size=4))
def test_random_jsonl_lines_load_or_raise_input_error(tmp_path: Path, items: list[Any]) -> None:
    text = "\n".join(json.dumps(i) for i in items)
    only_input_errors(load_eval_set, tmp_path / "faq.jsonl", text)


@SETTINGS
@given(seed=st.randoms(use_true_random=False))
def test_version_is_invariant_to_key_and_item_order(tmp_path: Path, seed: Any) -> None:
    data = yaml.safe_load(EVAL_TEXT)
    shuffled = dict(seed.sample(list(data.items()), len(data)))
    items = [dict(seed.sample(list(i.items()), len(i))) for i in shuffled["items"]]
    shuffled["items"] = seed.sample(items, len(items))
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    (tmp_path / "a" / "support-faq.yaml").write_text(EVAL_TEXT)
    (tmp_path / "b" / "support-faq.yaml").write_text(yaml.safe_dump(shuffled, sort_keys=False))

    original = load_eval_set(tmp_path / "a" / "support-faq.yaml")
    reordered = load_eval_set(tmp_path / "b" / "support-faq.yaml")

    assert original.version == reordered.version


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("faq.yaml", "items: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("faq.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"),
        ("routewatch.yaml", "routes: " + "[" * 5000 + "]" * 5000 + "\n"),
    ],
)
def test_deeply_nested_files_are_input_errors(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    loader = load_cfg if name == "routewatch.yaml" else load_eval_set

    with pytest.raises(InputError, match="nested"):
        loader(tmp_path / name)
