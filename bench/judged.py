"""Judged-run bench: does judging change the route latency routewatch records?

A judge shares the event loop (and here the provider) with the route's calls, so any
time the loop spends on judging is added to the latency of the route's calls in flight.
The simulator answers every call in a fixed ``--latency-ms``, in its own process, so a
faithful client records about that for the route, judged or not.

For each eval set, one with checks only and one with two judge criteria, this runs
``routewatch run`` twice in fresh processes: a first run, which judges every output
(cold verdict cache), and a daily run, whose unchanged outputs are cached. It prints
the route's recorded p50 and p95 and the p95 as a ratio of the simulated latency.
There is no target from an issue; compare the judged rows with the checks-only rows.

    python bench/judged.py [--items 400] [--concurrency 50] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from replay import simulator, write_project

from routewatch.scoring import percentile

CRITERIA = {
    "correctness": "The answer agrees with the reference and invents nothing.",
    "helpfulness": "The answer tells the reader what to do next.",
}


def judged_project(root: Path, items: int, concurrency: int, port: int, judged: bool) -> Path:
    """The replay bench's project, its eval set given two judge criteria when ``judged``."""
    config = write_project(root, items, concurrency, port)
    if judged:
        evals = root / "evals" / "bench.yaml"
        data = yaml.safe_load(evals.read_text())
        evals.write_text(
            yaml.safe_dump({**data, "judge": "default", "scale": [1, 5], "criteria": CRITERIA})
        )
        settings = yaml.safe_load(config.read_text())
        settings["judges"] = {"default": {"provider": "sim", "model": "judge-model"}}
        config.write_text(yaml.safe_dump(settings))
    return config


def route_latencies(db: Path) -> list[float]:
    """The recorded latency of every result of the newest run, in ms."""
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute("SELECT max(id) FROM runs").fetchone()
        rows = conn.execute("SELECT latency_ms FROM results WHERE run_id = ?", (run_id,))
        return [float(r[0]) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root / "p0", args.items, 1, 0)
        with simulator(root, args.latency_ms, root / "p0" / "evals") as (_, port):
            print(
                f"judged bench: {args.items} items, {args.concurrency} in flight, "
                f"{args.latency_ms:.0f} ms simulated latency"
            )
            print(
                f"{'eval set':>11}  {'run':>5}  {'p50':>8}  {'p95':>8}  {'p95/sim':>7}  {'wall':>6}"
            )
            for judged in (False, True):
                project = root / ("judged" if judged else "checks")
                config = judged_project(project, args.items, args.concurrency, port, judged)
                for label, at in (
                    ("first", "2026-11-01T06:00:00Z"),
                    ("daily", "2026-11-02T06:00:00Z"),
                ):
                    started = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "routewatch", "run", "-c", str(config), "--at", at],
                        capture_output=True,
                        check=True,
                        cwd=project,
                    )
                    wall = time.perf_counter() - started
                    latencies = route_latencies(project / "bench.db")
                    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
                    assert p50 is not None
                    assert p95 is not None
                    print(
                        f"{'judged' if judged else 'checks':>11}  {label:>5}  {p50:>6.1f}ms  "
                        f"{p95:>6.1f}ms  {p95 / args.latency_ms:>7.2f}  {wall:>5.1f}s"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
