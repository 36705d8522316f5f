"""``routewatch demo``: the whole loop with no keys and no services.

Writes a project (``routewatch init``'s files plus a simulator scenario) into a
folder, serves the built-in simulator on a free loopback port, points the
project's providers at it and backfills two weeks of daily runs into SQLite, detecting on
each day, applying the fallback policy and writing its file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from routewatch.alerts.dispatch import Dispatcher
from routewatch.clock import Clock
from routewatch.cycle import RunVerdict, completed_runs, detect_cycle
from routewatch.project import Project, load_project
from routewatch.runner import RunReport, execute, plan_runs, replay_gc
from routewatch.scaffold import CONFIG_TEMPLATE, template_text, write_project
from routewatch.sim.app import create_app
from routewatch.sim.scenario import load_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.migrate import open_database

SCENARIO_TEMPLATE = "demo-scenario.yaml"
DEFAULT_DAYS = 14


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    """What the demo did: its project and each day's run reports."""

    config_path: Path
    reports: list[RunReport]
    verdicts: list[RunVerdict] = field(default_factory=list)
    """Detection's verdict on each run, in order."""


def run_demo(
    directory: Path,
    *,
    env: Mapping[str, str],
    clock: Clock,
    days: int = DEFAULT_DAYS,
    on_day: Callable[[datetime], None] | None = None,
) -> DemoResult:
    """Backfill ``days`` daily runs (06:00 UTC, up to today) against the simulator.

    The project is written only where it is missing, so a second demo reuses it
    and its database: slots already run are skipped.
    """
    config_path = directory / CONFIG_TEMPLATE
    if not config_path.exists():
        write_project(directory)
    scenario_path = directory / SCENARIO_TEMPLATE
    if not scenario_path.exists():
        scenario_path.write_text(template_text(SCENARIO_TEMPLATE), encoding="utf-8")
    env = {k: v for k, v in env.items() if k != "ROUTEWATCH_DATABASE_URL"}
    project = load_project(config_path, env)
    scenario = load_scenario(scenario_path)
    today = clock.now().date()
    slots = [
        datetime.combine(today - timedelta(days=n), time(6, 0), tzinfo=UTC)
        for n in reversed(range(days))
    ]
    reports: list[RunReport] = []
    verdicts: list[RunVerdict] = []
    engine = open_database(project.config.database_url)
    try:
        with serve_in_thread(create_app(scenario, project.eval_sets)) as url:
            local = _pointed_at(project, f"{url}/v1")
            for at in slots:
                if on_day is not None:
                    on_day(at)
                plans = plan_runs(local.config, routes=[], at=at, now=clock.now())
                with replay_gc():
                    day = asyncio.run(execute(local, engine, plans, env=env, clock=clock))
                verdicts += detect_cycle(engine, local.config, completed_runs(day), now=clock.now())
                # Publishers write the policy files; alert targets, if configured, get theirs.
                Dispatcher(engine, local.config, env).deliver_due()
                reports += day
    finally:
        engine.dispose()
    return DemoResult(config_path=config_path, reports=reports, verdicts=verdicts)


def _pointed_at(project: Project, base_url: str) -> Project:
    """The project with every provider served by the simulator at ``base_url``."""
    providers = {
        name: provider.model_copy(update={"base_url": base_url, "api_key_env": None})
        for name, provider in project.config.providers.items()
    }
    config = project.config.model_copy(update={"providers": providers})
    return Project(config=config, eval_sets=project.eval_sets)
