"""How well detection works, measured: power, days to detect, false alarms per year.

Simulated routes (``routesim.py``: near-deterministic, mixed and fully random items) go
through the real, pure detection code (``routewatch.detect``), beside two yardsticks:
the plain 2-sigma rule on a 14-run baseline, and an oracle that knows every item's true
baseline pass probability and the shape of the drop, but not which items break.

    python bench/detection.py            # the full table (about 55 minutes on 2 busy cores)
    python bench/detection.py --quick    # fewer seeds, a smoke run

Targets (issue 5) are checked at the end; the exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from routesim import (
    SimRoute,
    break_items,
    diffuse,
    profile,
    record,
    run_days,
)

from routewatch.config import Detection
from routewatch.detect.baseline import history_depth
from routewatch.detect.budget import cycle_alpha
from routewatch.detect.findings import decide, evaluate, route_alpha

ALPHA = 1 / 365
"""One false alarm per route-year, with one run a day."""
SIGMA_AT_BUDGET = 3.44
"""The sd multiplier at which the sigma rule on 14 runs fires on 1/365 of stable runs
(STATISTICS.md 2.4): the 2-sigma rule "calibrated" to the same budget."""
ORACLE_NULL = 8000
SCENARIOS = (
    ("break", 0.02),
    ("break", 0.05),
    ("break", 0.10),
    ("diffuse", 0.02),
    ("diffuse", 0.05),
    ("diffuse", 0.10),
)


@dataclass(frozen=True)
class Cell:
    profile: str
    n: int
    seeds: int
    samples: int = 1


@dataclass
class CellResult:
    cell: Cell
    null_pages: int = 0
    null_sigma: int = 0
    null_runs: int = 0
    power: dict[tuple[str, float], dict[str, float]] | None = None


def oracle_table(p: np.ndarray, kind: str, drop: float, k: int, broken: np.ndarray) -> np.ndarray:
    """Per item and pass count 0..k, the oracle's log likelihood ratio of "dropped"."""
    q = np.clip(p, 1e-9, 1 - 1e-9)[:, None]
    x = np.arange(k + 1)[None, :]
    if kind == "break":
        eligible = (p >= 0.5)[:, None]
        f = broken.sum() / max(1, int(eligible.sum()))
        q1 = np.clip(0.1 * q, 1e-9, 1 - 1e-9)
        ratio = np.exp(stats.binom.logpmf(x, k, q1) - stats.binom.logpmf(x, k, q))
        return np.where(eligible, np.log((1 - f) + f * ratio), 0.0)
    q1 = np.clip(diffuse(p, drop), 1e-9, 1 - 1e-9)[:, None]
    return x * np.log(q1 / q) + (k - x) * np.log((1 - q1) / (1 - q))


def oracle_stat(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The oracle statistic for rows of today's pass counts ``x``."""
    return table[np.arange(table.shape[0])[None, :], x].sum(axis=-1)


def first_run_cell(cell: Cell) -> CellResult:
    """Per seed: a fresh route, a stable history as deep as detection reads (35 runs),
    then one stable run and one run per drop scenario, each judged by the real detector
    against the same history."""
    settings = Detection()
    rng = np.random.default_rng(zlib.crc32(repr(cell).encode()))
    result = CellResult(cell=cell)
    hits: dict[tuple[str, float], dict[str, int]] = {
        s: {"routewatch": 0, "sigma2": 0, "sigma_cal": 0, "oracle": 0} for s in SCENARIOS
    }
    alpha = cycle_alpha(settings.false_alarms_per_year, 1.0)
    a_route = route_alpha(settings, alpha, 1)
    k = cell.samples
    for _ in range(cell.seeds):
        p = profile(cell.profile, cell.n, rng)
        depth = history_depth(settings)
        history = [record(depth - i, rng.binomial(k, p), k) for i in range(depth)]

        def judge(
            x: np.ndarray, history: list = history, depth: int = depth
        ) -> tuple[bool, bool, bool]:
            today = record(depth + 1, x, k)
            ev = evaluate(today, history, settings, alpha_route=a_route)
            d = decide([ev], settings, alpha_cycle=alpha, tests=1)[0]
            rule = ev.sigma
            assert rule is not None
            sd = max(rule.sd, rule.sd_floor)
            return bool(d.findings), rule.fired, rule.observed < rule.mean - SIGMA_AT_BUDGET * sd

        pages, s2, _ = judge(rng.binomial(k, p))
        result.null_pages += pages
        result.null_sigma += s2
        result.null_runs += 1
        null_x = rng.binomial(k, p, size=(ORACLE_NULL, cell.n))
        for kind, drop in SCENARIOS:
            p1 = break_items(p, drop, rng) if kind == "break" else diffuse(p, drop)
            x = rng.binomial(k, p1)
            broken = p1 < p - 1e-12
            table = oracle_table(p, kind, drop, k, broken)
            threshold = np.quantile(oracle_stat(null_x, table), 1 - ALPHA)
            pages, s2, scal = judge(x)
            h = hits[(kind, drop)]
            h["routewatch"] += pages
            h["sigma2"] += s2
            h["sigma_cal"] += scal
            h["oracle"] += bool(oracle_stat(x[None, :], table)[0] > threshold)
    result.power = {s: {d: v / cell.seeds for d, v in h.items()} for s, h in hits.items()}
    return result


@dataclass(frozen=True)
class DriftCell:
    profile: str
    n: int
    seeds: int
    kind: str
    drop: float
    ramp: int = 0
    """Runs over which the drop ramps up linearly; 0 for a step."""


def drift_cell(cell: DriftCell) -> dict[str, float]:
    """Days to detect a persistent drop (day 1 = the first bad run), real pipeline."""
    settings = Detection()
    rng = np.random.default_rng(zlib.crc32(repr(cell).encode()))
    warm = history_depth(settings)
    horizon = 30
    days = []
    for _ in range(cell.seeds):
        route = SimRoute(settings=settings)
        p = profile(cell.profile, cell.n, rng)
        full = break_items(p, cell.drop, rng) if cell.kind == "break" else diffuse(p, cell.drop)

        def at(day: int, p: np.ndarray = p, full: np.ndarray = full) -> np.ndarray:
            if day < warm:
                return p
            step = day - warm + 1
            w = 1.0 if cell.ramp == 0 else min(1.0, step / cell.ramp)
            return p + w * (full - p)

        first = run_days(route, p, warm + horizon, rng, change=at, stop_on_open=True)
        if first is not None and first < warm:
            days.append(math.nan)  # a false alarm before the drop: not counted
        else:
            days.append(math.inf if first is None else first - warm + 1)
    arr = np.array([d for d in days if not math.isnan(d)])
    caught = arr[np.isfinite(arr)]
    return {
        "mean": float(caught.mean()) if caught.size else math.inf,
        "median": float(np.median(caught)) if caught.size else math.inf,
        "within7": float((arr <= 7).mean()),
        "missed": float((~np.isfinite(arr)).mean()),
    }


def false_alarm_cell(args: tuple[str, int, int, int]) -> tuple[int, int]:
    """Incidents opened over ``days`` stable days on ``routes`` fresh routes."""
    name, n, routes, days = args
    settings = Detection()
    rng = np.random.default_rng(zlib.crc32(repr(args).encode()))
    opened = total = 0
    warm = settings.min_baseline_runs
    for _ in range(routes):
        route = SimRoute(settings=settings)
        run_days(route, profile(name, n, rng), days, rng)
        opened += len(route.opened)
        total += days - warm
    return opened, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds (a smoke run)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = 60 if args.quick else 500
    fa_routes, fa_days = (4, 365) if args.quick else (30, 730)
    drift_seeds = 30 if args.quick else 200
    started = time.monotonic()
    cells = [
        Cell(name, n, seeds) for name in ("near_det", "mixed", "random") for n in (50, 200, 500)
    ]
    cells += [Cell("mixed", 200, seeds, samples=k) for k in (2, 4)]
    drifts = [
        DriftCell("mixed", 200, drift_seeds, "break", 0.03),
        DriftCell("mixed", 200, drift_seeds, "diffuse", 0.03),
        DriftCell("mixed", 200, drift_seeds, "break", 0.02),
        DriftCell("near_det", 200, drift_seeds, "break", 0.02),
        DriftCell("mixed", 200, drift_seeds, "break", 0.05, ramp=10),
        DriftCell("mixed", 200, drift_seeds, "diffuse", 0.05, ramp=10),
    ]
    fa_cells = [(name, 200, fa_routes, fa_days) for name in ("near_det", "mixed", "random")]
    with ProcessPoolExecutor(args.workers) as pool:
        firsts = pool.map(first_run_cell, cells)
        drift_out = pool.map(drift_cell, drifts)
        fa_out = pool.map(false_alarm_cell, fa_cells)
        firsts, drift_out, fa_out = list(firsts), list(drift_out), list(fa_out)
    d = Detection()
    print(
        f"# detection bench: {seeds} routes per cell, B={d.baseline_runs} (items "
        f"{d.item_history_runs}), G={d.guard_runs}, budget 1 false alarm/route-year"
    )
    print()
    print("## First-run power (share of drops paged on their first bad run)")
    print()
    print(
        "| profile | n | K | drop | routewatch | oracle | ratio | 2 sd (14 runs) "
        "| 2 sd at 1/yr budget |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in firsts:
        assert r.power is not None
        for (kind, drop), pw in r.power.items():
            ratio = pw["routewatch"] / pw["oracle"] if pw["oracle"] > 0 else math.nan
            print(
                f"| {r.cell.profile} | {r.cell.n} | {r.cell.samples} | {kind} {drop * 100:.0f} | "
                f"{pw['routewatch']:.2f} | {pw['oracle']:.2f} | {ratio:.2f} | {pw['sigma2']:.2f} | "
                f"{pw['sigma_cal']:.2f} |"
            )
    print()
    print("## False alarms per route-year on stable routes")
    print()
    print(
        "| profile | n | routewatch, first run (per yr) | 2 sd, first run (per yr) "
        "| routewatch, long histories (per yr, 95% CI) |"
    )
    print("|---|---|---|---|---|")
    by_profile = {name: out for (name, *_), out in zip(fa_cells, fa_out, strict=True)}
    for r in firsts:
        if r.cell.samples != 1:
            continue
        line = (
            f"| {r.cell.profile} | {r.cell.n} | {365 * r.null_pages / r.null_runs:.1f} | "
            f"{365 * r.null_sigma / r.null_runs:.1f} | "
        )
        seq = by_profile.get(r.cell.profile) if r.cell.n == 200 else None
        if seq is not None:
            opened, total = seq
            lo, hi = stats.poisson.interval(0.95, opened) if opened else (0.0, 3.7)
            line += f"{365 * opened / total:.2f} ({365 * lo / total:.2f}-{365 * hi / total:.2f}) |"
        else:
            line += " |"
        print(line)
    print()
    print("## Days to detect a persistent drop (n = 200; day 1 = first bad run)")
    print()
    print("| profile | drop | mean days | median | caught within 7 runs | missed within 30 |")
    print("|---|---|---|---|---|---|")
    for cell, out in zip(drifts, drift_out, strict=True):
        shape = (
            f"ramp 0→{cell.drop * 100:.0f} over {cell.ramp} runs"
            if cell.ramp
            else f"step {cell.drop * 100:.0f}"
        )
        print(
            f"| {cell.profile} | {cell.kind} {shape} | {out['mean']:.1f} | {out['median']:.0f} | "
            f"{out['within7']:.2f} | {out['missed']:.2f} |"
        )
    print()
    failures = check_targets(firsts, drifts, drift_out, by_profile)
    print(f"elapsed {time.monotonic() - started:.0f} s")
    for f in failures:
        print(f"TARGET MISSED: {f}")
    if not failures:
        print("all targets met")
    return 1 if failures else 0


def check_targets(
    firsts: list[CellResult],
    drifts: list[DriftCell],
    drift_out: list[dict[str, float]],
    by_profile: dict[str, tuple[int, int]],
) -> list[str]:
    """Issue 5's targets, each as a message when missed."""
    missed = []
    for name, (opened, total) in by_profile.items():
        rate = 365 * opened / total
        if rate > 2.0:
            missed.append(
                f"{name}: {rate:.2f} false alarms per route-year, more than 2x the budget"
            )
    for r in firsts:
        assert r.power is not None
        if r.cell.n != 200 or r.cell.samples != 1:
            continue
        pw = r.power[("break", 0.05)]
        if r.cell.profile in ("near_det", "mixed"):
            if pw["routewatch"] < 0.8:
                missed.append(f"{r.cell.profile}: 5-point break power {pw['routewatch']:.2f} < 0.8")
            if pw["routewatch"] < 0.9 * pw["oracle"]:
                missed.append(
                    f"{r.cell.profile}: 5-point break at "
                    f"{pw['routewatch'] / pw['oracle']:.2f} of oracle < 0.9"
                )
        for drop in (0.05, 0.10):
            dw = r.power[("diffuse", drop)]
            if dw["oracle"] >= 0.2 and dw["routewatch"] < 0.8 * dw["oracle"]:
                missed.append(
                    f"{r.cell.profile}: diffuse {drop * 100:.0f} at "
                    f"{dw['routewatch'] / dw['oracle']:.2f} of oracle < 0.8"
                )
    for cell, out in zip(drifts, drift_out, strict=True):
        target = cell.profile == "mixed" and cell.drop == 0.03 and not cell.ramp
        if target and cell.kind == "break" and out["within7"] < 0.7:
            missed.append(f"mixed 3-point step caught within 7 runs in {out['within7']:.2f} < 0.7")
    return missed


if __name__ == "__main__":
    sys.exit(main())
