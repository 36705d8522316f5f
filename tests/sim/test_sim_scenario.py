"""Scenario files: loading, located errors, and how layers resolve by logical day."""

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routewatch.errors import InputError
from routewatch.sim.scenario import Scenario, load_scenario, parse_scenario

SCENARIO_YAML = """\
seed: 3
eval_dir: evals
defaults:
  latency_ms: {median: 100, p95: 250}
  faults: {rate_limited: 0.1}
models:
  cheap:
    quality: 0.7
    changes:
      - from: 2026-03-10
        quality: 0.4
        faults: {server_error: 0.2}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "evals").mkdir(exist_ok=True)
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(InputError) as raised:
        load_scenario(write(tmp_path, text))
    return [str(p) for p in raised.value.problems]


def test_no_file_gives_the_built_in_default() -> None:
    behaviour = load_scenario(None).behaviour("any-model", date(2026, 1, 1))

    assert behaviour.quality == 0.9
    assert (behaviour.latency_ms.median, behaviour.latency_ms.p95) == (50, 120)
    assert behaviour.faults.total_rate == 0


def test_a_scenario_file_loads_with_eval_dir_beside_it(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO_YAML))

    assert scenario.seed == 3
    assert scenario.eval_dir == str(tmp_path / "evals")


def test_a_missing_eval_dir_is_located(tmp_path: Path) -> None:
    found = problems(SCENARIO_YAML.replace("eval_dir: evals", "eval_dir: nowhere"), tmp_path)

    assert found == [
        f"{tmp_path / 'scenario.yaml'}:2: eval_dir: folder not found: {tmp_path / 'nowhere'} "
        "(relative paths start at this file)"
    ]


def test_a_listed_model_inherits_the_defaults_it_does_not_set(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO_YAML))

    cheap = scenario.behaviour("cheap", date(2026, 3, 9))

    assert cheap.quality == 0.7
    assert cheap.latency_ms.median == 100
    assert cheap.faults.rate_limited == 0.1


def test_a_change_applies_from_its_day_and_merges_fault_rates(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO_YAML))

    cheap = scenario.behaviour("cheap", date(2026, 3, 10))

    assert cheap.quality == 0.4
    assert (cheap.faults.rate_limited, cheap.faults.server_error) == (0.1, 0.2)


def test_a_missing_file_is_an_error_not_the_default(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_a_bad_field_is_located_by_file_line_and_field(tmp_path: Path) -> None:
    found = problems(SCENARIO_YAML.replace("quality: 0.7", "quality: 1.7"), tmp_path)

    where = tmp_path / "scenario.yaml"
    assert found == [f"{where}:8: models.cheap.quality: Input should be less than or equal to 1"]


def test_an_unknown_key_is_located(tmp_path: Path) -> None:
    found = problems(SCENARIO_YAML.replace("    quality: 0.7", "    qualty: 0.7"), tmp_path)

    assert len(found) == 1
    assert ":8: models.cheap.qualty: unknown field; did you mean `quality`?" in found[0]


def test_fault_rates_above_one_are_refused(tmp_path: Path) -> None:
    text = SCENARIO_YAML.replace("{rate_limited: 0.1}", "{rate_limited: 0.6, reset: 0.6}")

    found = problems(text, tmp_path)

    assert ":5: defaults.faults: fault rates add up to 1.2; at most 1" in found[0]


def test_a_change_that_pushes_fault_rates_above_one_is_located(tmp_path: Path) -> None:
    text = SCENARIO_YAML.replace("{server_error: 0.2}", "{server_error: 0.95}")

    found = problems(text, tmp_path)

    assert len(found) == 1
    assert ":7: models.cheap: from 2026-03-10: faults: fault rates add up to 1.05" in found[0]


def test_a_change_needs_its_from_day(tmp_path: Path) -> None:
    found = problems(
        SCENARIO_YAML.replace("      - from: 2026-03-10\n        quality", "      - quality"),
        tmp_path,
    )

    assert found == [
        f"{tmp_path / 'scenario.yaml'}:10: models.cheap.changes[0].from: required field is missing"
    ]


def test_latency_needs_median_and_p95_or_fixed(tmp_path: Path) -> None:
    found = problems(SCENARIO_YAML.replace("median: 100, p95: 250", "median: 100"), tmp_path)

    assert ":4: defaults.latency_ms: give `median` and `p95`" in found[0]


def test_bad_yaml_is_located(tmp_path: Path) -> None:
    found = problems("seed: [1\n", tmp_path)

    assert found[0].startswith(f"{tmp_path / 'scenario.yaml'}:2: (file): invalid YAML")


def test_defaults_changes_apply_to_every_model() -> None:
    scenario = parse_scenario(
        {"defaults": {"changes": [{"from": "2026-03-10", "quality": 0.5}]}, "models": {"a": {}}}
    )

    assert scenario.behaviour("a", date(2026, 3, 10)).quality == 0.5
    assert scenario.behaviour("b", date(2026, 3, 9)).quality == 0.9


def test_as_json_round_trips_through_parse_scenario(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO_YAML))

    again = parse_scenario(scenario.as_json())

    day = date(2026, 3, 12)
    assert again.behaviour("cheap", day) == scenario.behaviour("cheap", day)
    assert again.behaviour("other", day) == scenario.behaviour("other", day)
    assert isinstance(again, Scenario)


KEYS = ["seed", "defaults", "models", "quality", "latency_ms", "faults", "changes", "from"]
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 3) | st.floats(-1, 2) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=25,
)
FIELDS = {
    "quality": st.floats(-0.1, 1.1),
    "spread": st.floats(0, 0.5),
    "latency_ms": st.fixed_dictionaries({"fixed": st.floats(0, 5)})
    | st.fixed_dictionaries({"median": st.floats(1, 5), "p95": st.floats(1, 9)}),
    "faults": st.dictionaries(
        st.sampled_from(["rate_limited", "server_error", "hang", "reset"]), st.floats(0, 0.7)
    ),
    "serve_as": st.sampled_from(["a", "b"]),
}
days = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31))
change = st.fixed_dictionaries({"from": days}, optional=FIELDS)
model = st.fixed_dictionaries({}, optional={**FIELDS, "changes": st.lists(change, max_size=3)})
scenarios = st.fixed_dictionaries(
    {},
    optional={
        "seed": st.integers(),
        "defaults": model,
        "models": st.dictionaries(st.sampled_from(["a", "b", "c"]), model, max_size=3),
    },
)


@settings(max_examples=200, deadline=None)
@given(data=scenarios | st.dictionaries(st.sampled_from(KEYS), junk, max_size=4))
def test_parse_scenario_loads_or_raises_input_error_and_loaded_ones_resolve(data: Any) -> None:
    try:
        scenario = parse_scenario(data)
    except InputError:
        return

    for name in [*scenario.models, "unlisted"]:
        for day in (date(2026, 1, 1), date(2026, 6, 30), date(2027, 1, 1)):
            assert 0 <= scenario.behaviour(name, day).faults.total_rate <= 1 + 1e-9


def test_an_unknown_key_points_at_where_the_scenario_keys_are_listed(tmp_path: Path) -> None:
    """Not at `routewatch init`, whose scenario names only some keys."""
    (found,) = problems("seed: 1\nmodels:\n  m: {colour: red}\n", tmp_path)

    assert ":3: models.m.colour: unknown field" in found
    assert 'README.md, "The simulator"' in found
    assert "routewatch init" not in found
