"""Replay bench: 1,000 items at 100 ms simulated latency, at concurrency 20 and 100.

Prints, per concurrency, the wall time as a ratio of the limit
``items x latency / concurrency``, the client CPU per item (calls, checks and
SQLite writes included) and the peak RSS, each against its target; and where the
wall time went: seconds to the first stored answer (setup and one round trip),
from the first answer to the last, and after the last (final writes and summary).

The simulator runs in its own process (``routewatch sim serve``) so the client's
CPU is measured alone; each concurrency runs in a fresh child process so each
peak RSS is its own. Usage: ``python bench/replay.py [--items N] [--latency-ms MS]``.

Each concurrency ends with a reference row, "aiohttp": the same requests sent by raw
aiohttp alone (no routewatch, nothing scored or stored) from a fresh process, new
connections and all. The wall ratio grows with the client's CPU per call (each answer
of a wave waits for those read before it), and this machine's speed varies from day to
day; the reference row tells a slow day from a slower routewatch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

TARGET_RATIO = 1.3
TARGET_CPU_MS = 1.5
TARGET_RSS_MB = 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def simulator(
    root: Path, latency_ms: float, evals: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``routewatch sim serve`` in its own process on a free port, answering every model in
    a fixed ``latency_ms`` (quality 0.9); yields the process and its port."""
    port = free_port()
    scenario = root / "scenario.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {"seed": 1, "defaults": {"quality": 0.9, "latency_ms": {"fixed": latency_ms}}}
        )
    )
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "routewatch",
            "sim",
            "serve",
            "--port",
            str(port),
            "--scenario",
            str(scenario),
            "--evals",
            str(evals),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.2)
        yield sim, port
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def write_project(root: Path, items: int, concurrency: int, port: int) -> Path:
    evals = root / "evals"
    evals.mkdir(parents=True, exist_ok=True)
    eval_set = {
        "name": "bench",
        "items": [
            {
                "id": f"item-{i:04d}",
                "input": f"What is the code for case {i}?",
                "reference": f"The code for case {i} is {i * 7 % 1000}.",
                "checks": [{"contains": str(i * 7 % 1000)}, {"max_chars": 400}],
            }
            for i in range(items)
        ],
    }
    (evals / "bench.yaml").write_text(yaml.safe_dump(eval_set))
    config = {
        "database_url": "sqlite:///bench.db",
        "providers": {
            "sim": {
                "base_url": f"http://127.0.0.1:{port}/v1",
                "max_concurrency": concurrency,
                "requests_per_minute": None,
                "timeout_s": 30,
                "max_retries": 2,
            }
        },
        "routes": {"bench": {"provider": "sim", "model": "bench-model", "evals": ["bench"]}},
    }
    path = root / "routewatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def child(config_path: Path, at: str) -> None:
    """Run one replay in this process and print its measurements as JSON."""
    from routewatch.clock import SystemClock, parse_instant
    from routewatch.project import load_project
    from routewatch.runner import execute, plan_runs, replay_gc
    from routewatch.store.migrate import open_database

    env = dict(os.environ)
    project = load_project(config_path, env)
    engine = open_database(project.config.database_url)
    clock = SystemClock()
    plans = plan_runs(project.config, routes=[], at=parse_instant(at), now=clock.now())
    stored: list[float] = []

    def on_result() -> None:
        stored.append(time.perf_counter())

    cpu0, wall0 = time.process_time(), time.perf_counter()
    with replay_gc():
        reports = asyncio.run(
            execute(project, engine, plans, env=env, clock=clock, on_result=on_result)
        )
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    summary = reports[0].summary
    assert summary is not None
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                # Where the wall time goes: before the first answer (setup and the
                # first call), between first and last answer, and after the last.
                "first_s": stored[0] - wall0 if stored else None,
                "answers_s": stored[-1] - stored[0] if stored else None,
                "after_s": wall0 + wall - stored[-1] if stored else None,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "results": summary.results_total,
                "errors": summary.errors_total,
                "score": summary.score,
            }
        )
    )


def reference(config_path: Path, at: str) -> None:
    """Send the replay's requests with raw aiohttp alone; print its measurements as JSON."""
    import aiohttp

    config = yaml.safe_load(config_path.read_text())
    provider = config["providers"]["sim"]
    (route,) = config["routes"].values()
    items = yaml.safe_load((config_path.parent / "evals" / "bench.yaml").read_text())["items"]
    url = provider["base_url"] + "/chat/completions"
    headers = {"content-type": "application/json", "x-routewatch-at": at}
    bodies = [
        json.dumps(
            {"model": route["model"], "messages": [{"role": "user", "content": item["input"]}]}
        ).encode()
        for item in items
    ]

    async def replay() -> list[float]:
        slots = asyncio.Semaphore(provider["max_concurrency"])
        stored: list[float] = []
        connector = aiohttp.TCPConnector(limit=provider["max_concurrency"])
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one(body: bytes) -> None:
                async with slots, session.post(url, data=body, headers=headers) as response:
                    json.loads(await response.read())
                stored.append(time.perf_counter())

            await asyncio.gather(*(one(body) for body in bodies))
        return stored

    cpu0, wall0 = time.process_time(), time.perf_counter()
    stored = asyncio.run(replay())
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "first_s": stored[0] - wall0,
                "answers_s": stored[-1] - stored[0],
                "after_s": wall0 + wall - stored[-1],
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "errors": 0,
            }
        )
    )


def phases(m: dict[str, float | None]) -> str:
    """``first/answers/after`` in seconds: to the first answer, to the last, to the end."""
    parts = (m.get("first_s"), m.get("answers_s"), m.get("after_s"))
    return "/".join("-" if p is None else f"{p:.2f}" for p in parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[20, 100])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--at", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (reference if args.reference else child)(args.child, args.at)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root / "p0", args.items, 1, 0)
        with simulator(root, args.latency_ms, root / "p0" / "evals") as (sim, port):
            print(f"replay bench: {args.items} items, {args.latency_ms:.0f} ms simulated latency")
            print(
                f"{'concurrency':>11}  {'run':>6}  {'wall':>7}  {'limit':>6}  {'ratio':>5}  "
                f"{'cpu/item':>8}  {'peak rss':>8}  {'errors':>6}  {'sim cpu/req':>11}  "
                f"{'first/answers/after':>19}  verdict"
            )
            failures = 0
            for concurrency in args.concurrency:
                project = root / f"c{concurrency}"
                config = write_project(project, args.items, concurrency, port)
                # The first run also stores the new eval-set version (once per version);
                # the second is the daily case, and the one the targets are judged on;
                # the third is raw aiohttp alone, for reference.
                for label, at in (
                    ("first", "2026-11-01T06:00:00Z"),
                    ("daily", "2026-11-02T06:00:00Z"),
                    ("aiohttp", "2026-11-02T06:00:00Z"),
                ):
                    sim_cpu = process_cpu_s(sim.pid)
                    mode = ["--reference"] if label == "aiohttp" else []
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", str(config), "--at", at, *mode],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=project,
                    )
                    m = json.loads(out.stdout.strip().splitlines()[-1])
                    sim_ms = (process_cpu_s(sim.pid) - sim_cpu) * 1000 / args.items
                    limit = args.items * args.latency_ms / 1000 / concurrency
                    ratio = m["wall_s"] / limit
                    cpu_ms = m["cpu_s"] * 1000 / args.items
                    ok = (
                        ratio <= TARGET_RATIO
                        and cpu_ms <= TARGET_CPU_MS
                        and m["rss_mb"] < TARGET_RSS_MB
                    )
                    if label == "daily":
                        failures += not ok
                    verdict = {"daily": "ok" if ok else "MISSED", "first": "(setup)"}.get(
                        label, "(reference)"
                    )
                    print(
                        f"{concurrency:>11}  {label:>6}  {m['wall_s']:>6.2f}s  {limit:>5.2f}s  "
                        f"{ratio:>5.2f}  {cpu_ms:>6.2f}ms  {m['rss_mb']:>6.1f}MB  "
                        f"{m['errors']:>6}  {sim_ms:>9.2f}ms  {phases(m):>19}  {verdict}"
                    )
            print(
                f"targets: ratio <= {TARGET_RATIO}, cpu/item <= {TARGET_CPU_MS} ms, "
                f"peak rss < {TARGET_RSS_MB:.0f} MB"
            )
            return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
