"""``routewatch init``: a commented ``routewatch.yaml``, an example eval set and a scenario.

The templates ship inside the package (``routewatch/templates``), so an installed
wheel can scaffold a project with no network and no repository checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from routewatch.errors import UsageError
from routewatch.files import write_text

CONFIG_TEMPLATE = "routewatch.yaml"
EVAL_TEMPLATE = "support-faq.yaml"
SCENARIO_TEMPLATE = "sim-scenario.yaml"


def template_text(name: str) -> str:
    """The text of a packaged template."""
    return resources.files("routewatch.templates").joinpath(name).read_text(encoding="utf-8")


def write_project(directory: Path, *, force: bool = False, scenario: bool = True) -> list[Path]:
    """Write the config, the example eval set and a simulator scenario; return the paths.

    The scenario makes the simulator answer the config's models as the demo does, with
    an exact judge: with the simulator's defaults, a judge wrong one time in ten marks
    about one run in seven ``judge_suspect``. ``scenario=False`` leaves it out (the
    demo writes its own).

    Raises:
        UsageError: a file would be overwritten and ``force`` is false.
        OutputError: a folder or file cannot be written.
    """
    targets = {
        directory / CONFIG_TEMPLATE: template_text(CONFIG_TEMPLATE),
        directory / "evals" / EVAL_TEMPLATE: template_text(EVAL_TEMPLATE),
    }
    if scenario:
        targets[directory / SCENARIO_TEMPLATE] = template_text(SCENARIO_TEMPLATE)
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(f"{names} already exist(s); pass --force to overwrite")
    for path, text in targets.items():
        write_text(path, text)
    return list(targets)
