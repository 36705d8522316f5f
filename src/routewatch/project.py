"""A project: ``routewatch.yaml`` and the eval sets it names, loaded and cross-checked together.

Every command that touches routes starts from ``load_project``; ``routewatch
validate`` is exactly this function with the problems printed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from routewatch._yamlpos import LineMap
from routewatch.config import Config, DeclaredNames, read_config
from routewatch.errors import ConfigError, EvalSetError, InputError, Problem, display_path
from routewatch.evalset import EvalSet, read_eval_dir


@dataclass(frozen=True, slots=True, kw_only=True)
class Project:
    """A valid configuration and its eval sets, by name."""

    config: Config
    eval_sets: dict[str, EvalSet]


def load_project(path: Path, env: Mapping[str, str]) -> Project:
    """Load the config at ``path`` and every eval set in its ``eval_dir``.

    The eval files are read, and checked against the config, even while the config has
    problems: from its ``eval_dir`` when that is text, against the entries that
    validated and every name the config gives.

    Raises:
        InputError: the problems of the config and of every eval file, together: the
            config's first, then each other file's by path, each file's by line. A
            ``ConfigError`` or an ``EvalSetError`` when all are in the one or the other.
    """
    draft = read_config(path, env)
    eval_sets: dict[str, EvalSet] = {}
    file_problems: list[Problem] = []
    reference_problems: list[Problem] = []
    if draft.eval_dir is not None:
        folder = read_eval_dir(draft.eval_dir)
        eval_sets, file_problems = folder.sets, folder.problems
        if draft.config is not None and folder.names is not None:
            reference_problems = check_eval_references(
                draft.config, eval_sets, draft.lines, set_names=folder.names, names=draft.names
            )
    problems = draft.problems + file_problems + reference_problems
    if problems or draft.config is None:
        problems.sort(key=lambda p: (p.path != draft.lines.path, p.path, p.line or 0))
        if not file_problems and not reference_problems:
            raise ConfigError(problems)
        if not draft.problems and not reference_problems:
            raise EvalSetError(problems)
        raise InputError(problems)
    return Project(config=draft.config, eval_sets=eval_sets)


def check_eval_references(
    config: Config,
    eval_sets: Mapping[str, EvalSet],
    lines: LineMap,
    *,
    set_names: Collection[str] | None = None,
    names: DeclaredNames | None = None,
) -> list[Problem]:
    """Routes name eval sets that exist; eval sets with criteria name a configured judge.

    Args:
        config: The config, or the parts of it that validated.
        eval_sets: The sets that loaded, by name.
        lines: Where the config's values sit.
        set_names: Every set the eval folder has a file for, loaded or not; default:
            ``eval_sets``'. A set with problems of its own is not also called unknown.
        names: Every name the config gives, valid entries or not; default: ``config``'s.
            A judge with problems of its own is not also called undefined.
    """
    known_sets = eval_sets.keys() if set_names is None else set_names
    judges = (names if names is not None else DeclaredNames.of(config)).judges
    problems: list[Problem] = []
    for name, route in config.routes.items():
        for i, set_name in enumerate(route.evals):
            if set_name not in known_sets:
                known = ", ".join(sorted(known_sets)) or "(none found)"
                problems.append(
                    lines.problem(
                        ("routes", name, "evals", i),
                        f"unknown eval set {set_name!r} in {display_path(Path(config.eval_dir))}; "
                        f"known: {known}",
                    )
                )
    for evalset in eval_sets.values():
        if not evalset.criteria or judges is None:
            continue
        judge = evalset.judge or "default"
        if judge not in judges:
            loc = ("judge",) if evalset.judge else ("criteria",)
            problems.append(
                evalset.problem(
                    loc,
                    f"criteria need judge {judge!r}, which routewatch.yaml does not "
                    f"define under `judges:`",
                )
            )
    return problems
