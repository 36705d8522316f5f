"""A project: ``routewatch.yaml`` and the eval sets it names, loaded and cross-checked together.

Every command that touches routes starts from ``load_project``; ``routewatch
validate`` is exactly this function with the problems printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from routewatch._yamlpos import LineMap
from routewatch.config import Config, load_config_located
from routewatch.errors import InputError, Problem, display_path
from routewatch.evalset import EvalSet, load_eval_dir


@dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    """A valid configuration and its eval sets, by name."""

    config: Config
    eval_sets: dict[str, EvalSet]


def load_project(path: Path, env: Mapping[str, str]) -> Project:
    """Load the config at ``path`` and every eval set in its ``eval_dir``.

    Raises:
        InputError: the problems of the config and of every eval file, together.
    """
    located = load_config_located(path, env)
    config = located.config
    eval_sets = load_eval_dir(Path(config.eval_dir))
    problems = check_eval_references(config, eval_sets, located.lines)
    if problems:
        raise InputError(problems)
    return Project(config=config, eval_sets=eval_sets)


def check_eval_references(
    config: Config, eval_sets: Mapping[str, EvalSet], lines: LineMap
) -> list[Problem]:
    """Routes name eval sets that exist; eval sets with criteria name a configured judge."""
    problems: list[Problem] = []
    for name, route in config.routes.items():
        for i, set_name in enumerate(route.evals):
            if set_name not in eval_sets:
                known = ", ".join(sorted(eval_sets)) or "(none found)"
                problems.append(
                    lines.problem(
                        ("routes", name, "evals", i),
                        f"unknown eval set {set_name!r} in {display_path(Path(config.eval_dir))}; "
                        f"known: {known}",
                    )
                )
    for evalset in eval_sets.values():
        if not evalset.criteria:
            continue
        judge = evalset.judge or "default"
        if judge not in config.judges:
            loc = ("judge",) if evalset.judge else ("criteria",)
            problems.append(
                evalset.problem(
                    loc,
                    f"criteria need judge {judge!r}, which routewatch.yaml does not "
                    f"define under `judges:`",
                )
            )
    return problems
