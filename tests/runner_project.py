"""A project on disk whose routes point at the simulator, for runner and CLI tests."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, event, select

from routewatch.clock import SystemClock, parse_instant
from routewatch.evalset import load_eval_set
from routewatch.project import load_project
from routewatch.runner import RunReport, execute, plan_runs
from routewatch.scaffold import EVAL_TEMPLATE, template_text
from routewatch.sim.app import create_app
from routewatch.sim.scenario import parse_scenario
from routewatch.sim.server import serve_in_thread
from routewatch.store.migrate import create_engine_for, open_database
from routewatch.store.tables import Base

SIM_MODELS: dict[str, Any] = {
    "perfect": {"quality": 1.0},
    "hopeless": {"quality": 0.0},
    "rate-limited": {"faults": {"rate_limited": 1.0, "retry_after_s": 1.5}},
    "failing": {"faults": {"server_error": 1.0}},
    "hanging": {"faults": {"hang": 1.0, "hang_s": 2.0}},
    "html": {"faults": {"bad_json": 1.0}},
    "truncating": {"faults": {"truncated": 1.0}},
    "resetting": {"faults": {"reset": 1.0}},
    "fallback": {"serve_as": "perfect"},
    "slow": {"quality": 1.0, "latency_ms": {"fixed": 150}, "ttft_fraction": 0.2},
    "judge": {"quality": 1.0},
}
SIM_SCENARIO: dict[str, Any] = {
    "seed": 3,
    "defaults": {"latency_ms": {"fixed": 2}},
    "models": SIM_MODELS,
}


def write_project(
    root: Path,
    base_url: str,
    routes: dict[str, dict[str, Any]],
    *,
    database_url: str | None = None,
    provider: dict[str, Any] | None = None,
    items: list[dict[str, Any]] | None = None,
    judge: dict[str, Any] | None = None,
) -> Path:
    """Write routewatch.yaml and evals/ under ``root``; return the config path.

    ``routes`` maps a route name to its fields (``model`` at least). The eval set is
    the packaged example, or ``items`` as the set ``bench``.
    """
    (root / "evals").mkdir(parents=True, exist_ok=True)
    if items is None:
        (root / "evals" / EVAL_TEMPLATE).write_text(template_text(EVAL_TEMPLATE))
        eval_name = "support-faq"
    else:
        (root / "evals" / "bench.yaml").write_text(yaml.safe_dump({"items": items}))
        eval_name = "bench"
    config = {
        "database_url": database_url or f"sqlite:///{root / 'rw.db'}",
        "providers": {
            "sim": {
                "base_url": f"{base_url}/v1",
                "max_concurrency": 8,
                "requests_per_minute": None,
                "timeout_s": 5,
                "max_retries": 1,
                **(provider or {}),
            }
        },
        "routes": {
            name: {"provider": "sim", "evals": [eval_name], **fields}
            for name, fields in routes.items()
        },
        "judges": {"default": {"provider": "sim", "model": "judge", **(judge or {})}},
        # Latency and cost must rise 1000-fold to page. The simulator answers in 2 ms but
        # usually runs in the test's own process, where a pause (the collector, another
        # thread) can stretch one call of a 6-item run past 100 ms: a real p95 rise that
        # latency detection would page on (it once did, in a full suite). These tests are
        # about quality and the machinery; tests/detect covers the latency detector.
        "detection": {"min_relative_change": 1000},
    }
    path = root / "routewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` as a dict."""
    engine: Engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(Base.metadata.tables[table])).mappings()]
    finally:
        engine.dispose()


@contextmanager
def faq_simulator(folder: Path) -> Iterator[str]:
    """The simulator on ``SIM_SCENARIO``, knowing the example eval set; yields its URL."""
    path = folder / EVAL_TEMPLATE
    path.write_text(template_text(EVAL_TEMPLATE))
    app = create_app(parse_scenario(SIM_SCENARIO), {"support-faq": load_eval_set(path)})
    with serve_in_thread(app) as url:
        yield url


def replay_with_slow_statements(
    config: Path, at: str, slow: Callable[[str], bool], delay_s: float
) -> tuple[RunReport, list[str]]:
    """Run ``config``'s one route at ``at`` in this process, every statement that ``slow``
    picks taking ``delay_s`` longer (a distant database, a busy disk).

    Returns the run's report and the names of the threads the slowed statements ran in.
    """
    env, clock = dict(os.environ), SystemClock()
    project = load_project(config, env)
    engine = open_database(project.config.database_url)
    slowed: list[str] = []

    def distant(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if slow(statement):
            slowed.append(threading.current_thread().name)
            time.sleep(delay_s)

    event.listen(engine, "before_cursor_execute", distant)
    try:
        plans = plan_runs(project.config, routes=[], at=parse_instant(at), now=clock.now())
        (report,) = asyncio.run(execute(project, engine, plans, env=env, clock=clock))
    finally:
        engine.dispose()
    return report, slowed
