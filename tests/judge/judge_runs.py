"""Running `routewatch run` on a project and reading what the judge did, for judging tests."""

from pathlib import Path
from typing import Any

import httpx
import yaml

from routewatch.cli import run
from runner_project import rows

ITEMS, CRITERIA = 6, 2
CANARY = 1
"""The example eval set's one canary criterion, judged afresh on every run."""


def judge_calls_at(sim: str) -> int:
    stats = httpx.get(f"{sim}/admin/stats").json()
    return int(stats["models"].get("judge", {}).get("judge", 0)) + int(
        stats["models"].get("judge", {}).get("ok", 0)
    )


def run_at(config: Path, day: int) -> int:
    return run(["run", "-c", str(config), "--at", f"2026-11-{day:02d}T06:00:00Z"])


def judge_scores(db: str) -> list[dict[str, Any]]:
    return [s for s in rows(db, "scores") if s["scorer"].startswith("judge:")]


def edit_yaml(path: Path, **fields: Any) -> None:
    """Set top-level ``fields`` of a YAML file (its comments are lost)."""
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, **fields}))
