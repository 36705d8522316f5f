"""Report and status bench: a year of daily runs for 20 routes x 500 items.

Seeds a database with what the weekly report and ``status`` read: one eval set of 500
items, 20 route snapshots, 365 completed daily runs per route with their totals, 500
results (outputs of about 200 characters) and 500 item outcomes per run, a detection per
run, a handful of incidents (``detail.finding.worst_items`` written by the real
``candidate_json``), policy versions, and scores with judge verdicts for a sample of runs
(the last week, and the runs each incident's evidence reads).

Then times ``write_report`` for the last ISO week of the data and ``build_status``, each
cold (a fresh process and engine: connect, first queries, template compile; the OS file
cache is not dropped) and warm (again in that process), three times, against DESIGN.md's
targets (report under 5 s, status under 1 s). Exit status 1 when a target is missed.

    python bench/report.py                      # SQLite, full size (seeding: a few minutes)
    python bench/report.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/report.py --quick              # 20 routes x 100 items x 90 days

``--postgres URL`` also seeds a fresh database ``routewatch_bench_<random>`` on that
server, and drops it at the end; ``--no-sqlite`` skips the SQLite file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

import numpy as np
from sqlalchemy import JSON, Engine, create_engine, insert, make_url, text

from routewatch.config import Config
from routewatch.detect.budget import Detector
from routewatch.detect.findings import Candidate, Metric, WorstItem
from routewatch.evalset import EvalSet
from routewatch.store.detection import candidate_json
from routewatch.store.migrate import create_engine_for, open_for_reading, upgrade
from routewatch.store.runs import ensure_eval_set, ensure_route_snapshot
from routewatch.store.tables import Base

REPORT_LIMIT_S = 5.0
STATUS_LIMIT_S = 1.0
REPEATS = 3
LAST_DAY = date(2026, 11, 29)
"""A Sunday: the data's last ISO week (2026-W48) is complete."""
EVAL_SET = "bench"
JUDGE = "grader"
CRITERION = "correctness"
SCORE_SAMPLE_DAYS = 7
"""Runs of the last days whose results carry scores and judge verdicts (a sample)."""
BROKEN_ITEMS = 30
"""Items that fail during a score incident."""


def names(spaced: str) -> list[str]:
    """Column names (or words) written space-separated."""
    return spaced.split()


ERRORED = (None, None, 0, 0, 1)
"""An errored item's outcome: no score, not passed, no sample scored, one errored."""

RUN_COLS = names(
    "id route route_snapshot_id eval_set_id eval_set_name slot_key at started_at finished_at "
    "status owner heartbeat_at judge_suspect partially_judged items_total results_total "
    "errors_total fallback_total score pass_rate error_rate p50_latency_ms p95_latency_ms "
    "cost_usd tokens_in tokens_out judge_calls judge_calls_saved judge_tokens judge_cost_usd "
    "error_message"
)
RESULT_COLS = names(
    "id run_id eval_item_id item_id sample output finish_reason tokens_in tokens_out cost_usd "
    "latency_ms ttft_ms attempts error_class error_message served_model served_by_fallback "
    "response_meta created_at"
)
OUTCOME_COLS = names(
    "run_id item_hash item_id weight critical score passed samples_scored samples_passed "
    "samples_errored"
)
DETECTION_COLS = names(
    "run_id route eval_set_name at known baseline_runs paired_items observed baseline_mean "
    "baseline_sd lower_limit p_value cusum in_incident findings created_at"
)
VERDICT_COLS = names(
    "id cache_key judge model criterion raw_score score reasoning samples tokens_in tokens_out "
    "cost_usd error created_at"
)
SCORE_COLS = names("id result_id scorer value passed weight detail judge_verdict_id")
INCIDENT_COLS = names(
    "id route eval_set_name metric detector status opened_at resolved_at opening_run_id "
    "resolving_run_id observed baseline_mean baseline_sd threshold p_value severity detail "
    "healthy_streak last_run_id notified_at"
)
POLICY_COLS = names(
    "id policy version chain pins demoted actor reason incident_id created_at all_degraded"
)

WORDS = names(
    "the route answer model request latency customer invoice policy shipping account "
    "refund order support weekly number reference context summary detail result value "
    "response question system update status window report item account balance"
)


@dataclass(frozen=True)
class Size:
    routes: int
    items: int
    days: int


@dataclass(frozen=True)
class IncidentSpec:
    route: int
    metric: Metric
    detector: Detector
    opened: int
    """Days before the last day."""
    resolved: int | None


INCIDENTS = (
    IncidentSpec(3, Metric.error_rate, Detector.errors, 200, 197),
    IncidentSpec(9, Metric.cost, Detector.cost, 100, None),
    IncidentSpec(1, Metric.score, Detector.cet, 40, 33),
    IncidentSpec(5, Metric.latency, Detector.latency, 10, 3),
    IncidentSpec(7, Metric.score, Detector.sigma, 6, 2),
    IncidentSpec(1, Metric.score, Detector.cet, 4, None),
)
POLICIES = {"chat": ((0, 1, 2), "auto"), "batch": ((5, 6), "suggest")}


def route_name(r: int) -> str:
    return f"route-{r:02d}"


def bench_config(url: str, size: Size, reports: Path) -> Config:
    """The config the report and status read: routes on a dummy provider, two policies."""
    routes = {
        route_name(r): {
            "provider": "dummy",
            "model": f"model-{r:02d}",
            "evals": [EVAL_SET],
            "schedule": "0 6 * * *",
            "price": {"input_per_mtok": 0.15 + 0.4 * r, "output_per_mtok": 0.6 + 1.6 * r},
        }
        for r in range(size.routes)
    }
    policies = {
        name: {"chain": [route_name(r) for r in chain], "mode": mode}
        for name, (chain, mode) in POLICIES.items()
        if max(chain) < size.routes
    }
    return Config.model_validate(
        {
            "database_url": url,
            "providers": {"dummy": {"base_url": "http://127.0.0.1:9/v1"}},
            "judges": {JUDGE: {"provider": "dummy", "model": "judge-model"}},
            "routes": routes,
            "policies": policies,
            "reports": {"dir": str(reports)},
        }
    )


def last_week() -> str:
    year, week, _ = LAST_DAY.isocalendar()
    return f"{year}-W{week:02d}"


# --- seeding ---------------------------------------------------------------------------


class Sink:
    """Bulk writes of row tuples, one transaction per ``commit``."""

    def write(self, table: str, cols: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SQLAlchemySink(Sink):
    """``insert(table)`` executemany through SQLAlchemy (SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()

    def write(self, table: str, cols: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.execute(
                insert(Base.metadata.tables[table]), [dict(zip(cols, r, strict=True)) for r in rows]
            )

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class CopySink(Sink):
    """PostgreSQL ``COPY ... FROM STDIN`` through psycopg's ``cursor.copy``."""

    def __init__(self, engine: Engine) -> None:
        from psycopg.types.json import Json

        self.json = Json
        self.raw = engine.raw_connection()
        self.pg: Any = self.raw.driver_connection

    def write(self, table: str, cols: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        columns = Base.metadata.tables[table].c
        wrap = [i for i, c in enumerate(cols) if isinstance(columns[c].type, JSON)]
        with (
            self.pg.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy,
        ):
            for row in rows:
                if wrap:
                    values = list(row)
                    for i in wrap:
                        if values[i] is not None:
                            values[i] = self.json(values[i])
                    copy.write_row(values)
                else:
                    copy.write_row(row)

    def commit(self) -> None:
        self.pg.commit()

    def close(self) -> None:
        self.raw.close()


@dataclass
class Route:
    index: int
    name: str
    snapshot_id: int
    price_in: float
    price_out: float
    latency_ms: float
    error_rate: float
    pass_p: np.ndarray
    scores: list[float] = field(default_factory=list)
    """Scores of runs outside incidents, oldest first: the baseline's source."""
    metrics: dict[str, list[float]] = field(default_factory=dict)
    cusum: float = 0.0


@dataclass
class OpenedIncident:
    spec: IncidentSpec
    open_day: int
    resolve_day: int | None
    run_id: int = 0
    observed: float = 0.0
    baseline_mean: float | None = None
    baseline_sd: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    worst: tuple[WorstItem, ...] = ()
    last_run_id: int = 0
    resolving_run_id: int | None = None


def words(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))


def clip_text(value: str, chars: int) -> str:
    return value[:chars].rstrip()


def at_of(day: int, size: Size) -> datetime:
    first = LAST_DAY - timedelta(days=size.days - 1)
    return datetime(first.year, first.month, first.day, 6, tzinfo=UTC) + timedelta(days=day)


def run_id_of(day: int, route: int, size: Size) -> int:
    return day * size.routes + route + 1


def seed(engine: Engine, sink: Sink, size: Size) -> dict[str, int]:
    """Fill the database; returns row counts per table."""
    rng = np.random.default_rng(1)
    config = bench_config("sqlite://", size, Path("."))
    items = [
        {
            "id": f"item-{i:04d}",
            "input": f"Customer {i} asks: what is the reference code for case {i}? "
            + words(rng, 12),
            "reference": f"The reference code for case {i} is {i * 7919 % 100000:05d}.",
            "checks": [{"contains": f"{i * 7919 % 100000:05d}"}, {"max_chars": 600}],
            "weight": 2.0 if i % 25 == 0 else 1.0,
            "critical": i % 100 == 0,
        }
        for i in range(size.items)
    ]
    evalset = EvalSet.model_validate(
        {
            "name": EVAL_SET,
            "description": "Bench eval set",
            "judge": JUDGE,
            "criteria": {CRITERION: "Is the answer correct and complete?"},
            "items": items,
        }
    )
    stored = ensure_eval_set(engine, evalset)
    item_ids = [it.id for it in evalset.items]
    item_pk = [stored.item_ids[i] for i in item_ids]
    hashes = [it.hash for it in evalset.items]
    weights = np.array([it.weight for it in evalset.items])
    critical = [it.critical for it in evalset.items]
    codes = [f"{i * 7919 % 100000:05d}" for i in range(size.items)]
    good = [
        [
            clip_text(f"The reference code for case {i} is {codes[i]}. " + words(rng, 40), 200)
            for _ in range(4)
        ]
        for i in range(size.items)
    ]
    bad = [
        [clip_text(f"I could not find case {i}. " + words(rng, 40), 200) for _ in range(2)]
        for i in range(size.items)
    ]
    reasoning_pool = [clip_text(words(rng, 60), 300) for _ in range(64)]
    ease = rng.normal(0.0, 1.2, size.items)
    broken = rng.choice(size.items, size=min(BROKEN_ITEMS, size.items), replace=False)
    tokens_in_item = rng.integers(60, 260, size.items)

    routes: list[Route] = []
    for r in range(size.routes):
        name = route_name(r)
        quality = 0.78 + 0.17 * r / max(1, size.routes - 1)
        logit = math.log(quality / (1 - quality))
        routes.append(
            Route(
                index=r,
                name=name,
                snapshot_id=ensure_route_snapshot(engine, name, config.routes[name]),
                price_in=config.routes[name].price.input_per_mtok,
                price_out=config.routes[name].price.output_per_mtok,
                latency_ms=float(rng.uniform(350, 2500)),
                error_rate=0.004,
                pass_p=1 / (1 + np.exp(-(logit + ease))),
            )
        )

    incidents = [
        OpenedIncident(
            spec=s,
            open_day=size.days - 1 - s.opened,
            resolve_day=None if s.resolved is None else size.days - 1 - s.resolved,
        )
        for s in INCIDENTS
        if s.route < size.routes and s.opened < size.days - 20
    ]
    incidents.sort(key=lambda i: (i.open_day, i.spec.route))

    def active(route: int, day: int) -> list[OpenedIncident]:
        return [
            i
            for i in incidents
            if i.spec.route == route
            and i.open_day <= day
            and (i.resolve_day is None or day < i.resolve_day)
        ]

    sample_runs: set[int] = set()
    for inc in incidents:
        for d in (inc.open_day - 1, inc.open_day):
            sample_runs.add(run_id_of(d, inc.spec.route, size))
    counts: dict[str, int] = {}
    verdict_id = score_id = 0

    def put(table: str, cols: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        sink.write(table, cols, rows)
        counts[table] = counts.get(table, 0) + len(rows)

    for day in range(size.days):
        at = at_of(day, size)
        batch: dict[str, list[tuple[Any, ...]]] = {
            "runs": [],
            "results": [],
            "item_outcomes": [],
            "detections": [],
            "judge_verdicts": [],
            "scores": [],
        }
        uniform = rng.random((size.routes, size.items))
        err_u = rng.random((size.routes, size.items))
        lat_z = rng.normal(0.0, 0.35, (size.routes, size.items))
        tok_out = rng.integers(35, 70, (size.routes, size.items))
        for route in routes:
            run_id = run_id_of(day, route.index, size)
            now_bad = active(route.index, day)
            metrics = {i.spec.metric for i in now_bad}
            p = route.pass_p.copy()
            if Metric.score in metrics:
                p[broken] = 0.03
            errored = err_u[route.index] < (0.25 if Metric.error_rate in metrics else 0.004)
            passed = uniform[route.index] < p
            latency = route.latency_ms * np.exp(lat_z[route.index])
            if Metric.latency in metrics:
                latency *= 3.0
            t_out = tok_out[route.index] * (2.5 if Metric.cost in metrics else 1.0)
            t_out = t_out.astype(int)
            t_in = tokens_in_item
            ok = ~errored
            n_ok = int(ok.sum())
            item_score = np.where(passed, 1.0, 0.0)
            score = float((item_score * weights)[ok].sum() / weights[ok].sum())
            pass_rate = float(passed[ok].mean())
            error_rate = 1 - n_ok / size.items
            p50, p95 = (float(v) for v in np.percentile(latency[ok], [50, 95]))
            cost_each = (t_in * route.price_in + t_out * route.price_out) / 1e6
            cost = float(cost_each[ok].sum())
            tokens_in, tokens_out = int(t_in[ok].sum()), int(t_out[ok].sum())
            saved = int(n_ok * 0.6)
            judge_calls = n_ok - saved
            finished = at + timedelta(seconds=float(latency.sum()) / 16000 + 20)
            batch["runs"].append(
                (
                    run_id,
                    route.name,
                    route.snapshot_id,
                    stored.id,
                    EVAL_SET,
                    at.isoformat(),
                    at,
                    at,
                    finished,
                    "completed",
                    "bench-host:4242",
                    finished,
                    False,
                    False,
                    size.items,
                    size.items,
                    size.items - n_ok,
                    0,
                    score,
                    pass_rate,
                    error_rate,
                    p50,
                    p95,
                    cost,
                    tokens_in,
                    tokens_out,
                    judge_calls,
                    saved,
                    judge_calls * 520,
                    judge_calls * 520 * 0.3e-6,
                    None,
                )
            )
            sampled = day >= size.days - SCORE_SAMPLE_DAYS or run_id in sample_runs
            passed_l, errored_l = passed.tolist(), errored.tolist()
            latency_l, t_out_l, cost_l = latency.tolist(), t_out.tolist(), cost_each.tolist()
            base_id = (run_id - 1) * size.items
            variant = (day + route.index) % 4
            for i in range(size.items):
                result_id = base_id + i + 1
                if errored_l[i]:
                    batch["results"].append(
                        (
                            result_id,
                            run_id,
                            item_pk[i],
                            item_ids[i],
                            0,
                            None,
                            None,
                            None,
                            None,
                            None,
                            30000.0 if Metric.error_rate not in metrics else latency_l[i],
                            None,
                            3,
                            "timeout",
                            "no response within 30 s (3 attempts)",
                            None,
                            False,
                            None,
                            finished,
                        )
                    )
                    batch["item_outcomes"].append(
                        (run_id, hashes[i], item_ids[i], float(weights[i]), critical[i], *ERRORED)
                    )
                    continue
                ok_i = passed_l[i]
                output = good[i][variant] if ok_i else bad[i][variant % 2]
                batch["results"].append(
                    (
                        result_id,
                        run_id,
                        item_pk[i],
                        item_ids[i],
                        0,
                        output,
                        "stop",
                        int(t_in[i]),
                        t_out_l[i],
                        cost_l[i],
                        latency_l[i],
                        None,
                        1,
                        None,
                        None,
                        f"model-{route.index:02d}-2026-06-01",
                        False,
                        None,
                        finished,
                    )
                )
                batch["item_outcomes"].append(
                    (
                        run_id,
                        hashes[i],
                        item_ids[i],
                        float(weights[i]),
                        critical[i],
                        1.0 if ok_i else 0.0,
                        ok_i,
                        1,
                        int(ok_i),
                        0,
                    )
                )
                if sampled:
                    verdict_id += 1
                    raw = 5 if ok_i else 2
                    batch["judge_verdicts"].append(
                        (
                            verdict_id,
                            hashlib.sha256(f"{run_id}:{i}".encode()).hexdigest(),
                            JUDGE,
                            "judge-model",
                            CRITERION,
                            float(raw),
                            (raw - 1) / 4,
                            reasoning_pool[(i + day) % len(reasoning_pool)],
                            None,
                            450,
                            70,
                            0.000156,
                            None,
                            finished,
                        )
                    )
                    score_id += 1
                    batch["scores"].append(
                        (
                            score_id,
                            result_id,
                            "check:contains:0",
                            1.0 if ok_i else 0.0,
                            ok_i,
                            1.0,
                            None if ok_i else {"detail": f"{codes[i]!r} not found"},
                            None,
                        )
                    )
                    score_id += 1
                    batch["scores"].append(
                        (
                            score_id,
                            result_id,
                            f"judge:{CRITERION}",
                            (raw - 1) / 4,
                            None,
                            1.0,
                            {
                                "raw_score": float(raw),
                                "reasoning": reasoning_pool[(i + day) % len(reasoning_pool)],
                                "cached": False,
                            },
                            verdict_id,
                        )
                    )
            # detection: the baseline is the last 14 runs outside incidents
            history = route.scores[-14:]
            known = len(history) >= 5
            b_mean = mean(history) if known else None
            b_sd = pstdev(history) if known else None
            limit = b_mean - 2 * max(b_sd or 0.0, 0.01) if b_mean is not None else None
            drop = (b_mean - score) if b_mean is not None else 0.0
            p_value = (
                0.5 * math.erfc(drop / (max(b_sd or 0.01, 0.005) * math.sqrt(2))) if known else None
            )
            route.cusum = max(0.0, route.cusum + (drop / 0.01 - 0.5 if known else 0.0))
            failed_today = [i for i in range(size.items) if not passed_l[i] and not errored_l[i]]
            failed_today.sort(key=lambda i: -float(route.pass_p[i]))
            worst = tuple(
                WorstItem(
                    item_id=item_ids[i],
                    baseline=round(float(route.pass_p[i]), 4),
                    today=0.0,
                    surprise=round(-math.log(1 - min(float(route.pass_p[i]), 0.999)), 4),
                )
                for i in failed_today[:10]
            )
            metric_values = {
                Metric.error_rate: error_rate,
                Metric.latency: p95,
                Metric.cost: cost / max(n_ok, 1),
            }
            candidates = [
                Candidate(
                    metric=Metric.score,
                    detector=Detector.sigma,
                    observed=score,
                    baseline_mean=b_mean,
                    baseline_sd=b_sd,
                    threshold=limit,
                    fired=limit is not None and score < limit,
                    pages=False,
                    worst_items=worst,
                ),
                Candidate(
                    metric=Metric.score,
                    detector=Detector.cet,
                    observed=pass_rate,
                    baseline_mean=b_mean,
                    threshold=0.0005,
                    p_value=p_value,
                    share=0.25,
                    worst_items=worst,
                ),
                Candidate(
                    metric=Metric.score,
                    detector=Detector.cusum,
                    observed=route.cusum,
                    threshold=9.2,
                    fired=route.cusum > 9.2,
                ),
            ]
            for metric, detector in (
                (Metric.error_rate, Detector.errors),
                (Metric.latency, Detector.latency),
                (Metric.cost, Detector.cost),
            ):
                past = route.metrics.get(metric, [])[-14:]
                candidates.append(
                    Candidate(
                        metric=metric,
                        detector=detector,
                        observed=metric_values[metric],
                        baseline_mean=mean(past) if past else None,
                        threshold=mean(past) * 1.25 if past else None,
                        p_value=0.5 if past else None,
                        share=0.1,
                    )
                )
            for inc in incidents:
                if inc.spec.route != route.index:
                    continue
                if day == inc.open_day:
                    past = route.metrics.get(inc.spec.metric, [])[-14:]
                    inc.run_id = run_id
                    inc.observed = score if inc.spec.metric == Metric.score else 0.0
                    if inc.spec.metric == Metric.score:
                        inc.baseline_mean, inc.baseline_sd = b_mean, b_sd
                        inc.threshold = limit if inc.spec.detector == Detector.sigma else 0.0005
                        inc.p_value = None if inc.spec.detector == Detector.sigma else 1e-9
                        inc.worst = tuple(
                            WorstItem(
                                item_id=item_ids[int(i)],
                                baseline=round(float(route.pass_p[int(i)]), 4),
                                today=0.0,
                                surprise=round(
                                    -math.log(1 - min(float(route.pass_p[int(i)]), 0.999)), 4
                                ),
                            )
                            for i in sorted(broken, key=lambda i: -float(route.pass_p[int(i)]))
                            if not passed_l[int(i)]
                        )[:10]
                    else:
                        inc.observed = metric_values[inc.spec.metric]
                        inc.baseline_mean = mean(past) if past else None
                        inc.baseline_sd = pstdev(past) if past else None
                        inc.threshold = mean(past) * 1.25 if past else None
                        inc.p_value = 1e-7
                if inc.open_day <= day and (inc.resolve_day is None or day < inc.resolve_day):
                    inc.last_run_id = run_id
                if day == inc.resolve_day:
                    inc.resolving_run_id = run_id
            batch["detections"].append(
                (
                    run_id,
                    route.name,
                    EVAL_SET,
                    at,
                    known,
                    len(history),
                    size.items if known else 0,
                    score,
                    b_mean,
                    b_sd,
                    limit,
                    p_value,
                    route.cusum,
                    sorted(metrics),
                    [candidate_json(c, paged=False) for c in candidates],
                    finished + timedelta(seconds=1),
                )
            )
            if Metric.score not in metrics:
                route.scores.append(score)
            for metric, value in metric_values.items():
                if metric not in metrics:
                    route.metrics.setdefault(metric, []).append(value)
        put("runs", RUN_COLS, batch["runs"])
        put("results", RESULT_COLS, batch["results"])
        put("item_outcomes", OUTCOME_COLS, batch["item_outcomes"])
        put("detections", DETECTION_COLS, batch["detections"])
        put("judge_verdicts", VERDICT_COLS, batch["judge_verdicts"])
        put("scores", SCORE_COLS, batch["scores"])
        sink.commit()

    put("incidents", INCIDENT_COLS, incident_rows(incidents, size))
    put("policy_versions", POLICY_COLS, policy_rows(incidents, size))
    sink.commit()
    return counts


def incident_rows(incidents: list[OpenedIncident], size: Size) -> list[tuple[Any, ...]]:
    rows = []
    for number, inc in enumerate(incidents, 1):
        finding = Candidate(
            metric=inc.spec.metric,
            detector=inc.spec.detector,
            observed=inc.observed,
            baseline_mean=inc.baseline_mean,
            baseline_sd=inc.baseline_sd,
            threshold=inc.threshold,
            p_value=inc.p_value,
            share=0.25,
            fired=True,
            still_bad=True,
            worst_items=inc.worst,
        )
        opened_at = at_of(inc.open_day, size)
        resolved = inc.resolve_day is not None
        rows.append(
            (
                number,
                route_name(inc.spec.route),
                EVAL_SET,
                inc.spec.metric,
                inc.spec.detector.value,
                "resolved" if resolved else "open",
                opened_at,
                at_of(inc.resolve_day, size) if inc.resolve_day is not None else None,
                inc.run_id,
                inc.resolving_run_id,
                inc.observed,
                inc.baseline_mean,
                inc.baseline_sd,
                inc.threshold,
                inc.p_value,
                "page",
                {"finding": candidate_json(finding, paged=True)},
                3 if resolved else 0,
                inc.last_run_id,
                opened_at,
            )
        )
    return rows


def policy_rows(incidents: list[OpenedIncident], size: Size) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for name, (chain_ix, mode) in POLICIES.items():
        if max(chain_ix) >= size.routes:
            continue
        chain = [route_name(r) for r in chain_ix]
        rows.append(
            (
                len(rows) + 1,
                name,
                1,
                chain,
                None,
                [],
                "routewatch",
                "first version, from the configured chain",
                None,
                at_of(0, size) + timedelta(minutes=6),
                False,
            )
        )
        if mode != "auto":
            continue
        events: list[tuple[datetime, int, str, int]] = []
        for number, inc in enumerate(incidents, 1):
            if inc.spec.route not in chain_ix or inc.spec.metric not in (
                Metric.score,
                Metric.error_rate,
            ):
                continue
            events.append((at_of(inc.open_day, size), number, "open", inc.spec.route))
            if inc.resolve_day is not None:
                events.append((at_of(inc.resolve_day, size), number, "resolve", inc.spec.route))
        demoted: dict[str, dict[str, Any]] = {}
        version = 1
        for when, number, kind, route in sorted(events):
            r = route_name(route)
            if kind == "open":
                demoted[r] = {
                    "route": r,
                    "since": when.isoformat(),
                    "reason": f"incident #{number}: score dropped",
                    "incident_id": number,
                }
                reason = f"demoted {r}: incident #{number}"
            else:
                demoted.pop(r, None)
                reason = f"restored {r}: incident #{number} resolved"
            version += 1
            active = [c for c in chain if c not in demoted] + [c for c in chain if c in demoted]
            rows.append(
                (
                    len(rows) + 1,
                    name,
                    version,
                    active,
                    None,
                    list(demoted.values()),
                    "routewatch",
                    reason,
                    number,
                    when + timedelta(minutes=6),
                    False,
                )
            )
    return rows


def fix_sequences(engine: Engine) -> None:
    """Explicit ids leave PostgreSQL's sequences behind; move them past the data."""
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            if "id" in table.c and table.c.id.primary_key:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"COALESCE((SELECT max(id) FROM {table.name}), 0) + 1, false)"
                    )
                )


def build(url: str, size: Size) -> tuple[float, dict[str, int]]:
    """Create the schema with the real migrations, then seed; returns (seconds, counts)."""
    t0 = time.perf_counter()
    upgrade(url)
    engine = create_engine_for(url)
    try:
        postgres = engine.dialect.name == "postgresql"
        sink: Sink = CopySink(engine) if postgres else SQLAlchemySink(engine)
        try:
            counts = seed(engine, sink, size)
        finally:
            sink.close()
        if postgres:
            fix_sequences(engine)
            # What autovacuum does after bulk inserts: statistics and the visibility map.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return time.perf_counter() - t0, counts


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url``, dropped on exit."""
    name = f"routewatch_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- measuring -------------------------------------------------------------------------


def child(url: str, what: str, size: Size, reports: Path) -> None:
    """One cold call (new engine, first connection), then REPEATS warm ones; JSON out."""
    from collections import Counter

    from routewatch.report.data import load_report, week_window
    from routewatch.report.render import write_report
    from routewatch.status import build_status

    config = bench_config(url, size, reports)
    window = week_window(last_week(), config.timezone)
    call: Callable[[Engine], object]
    if what == "report":

        def call(engine: Engine) -> object:
            return write_report(engine, config, window)

    else:

        def call(engine: Engine) -> object:
            return build_status(engine, config)

    times = []
    engine: Engine | None = None
    for _ in range(1 + REPEATS):
        t0 = time.perf_counter()
        if engine is None:
            engine = open_for_reading(url)  # as the commands open it
        out = call(engine)
        times.append(time.perf_counter() - t0)
    assert engine is not None
    if what == "report":
        data = load_report(engine, config, window)
        facts = (
            f"{Path(str(out)).stat().st_size / 1024:.0f} KB, "
            f"{sum(len(s.points) for s in data.sections)} runs charted, "
            f"{len(data.incidents)} incidents "
            f"({sum(len(i.evidence) for i in data.incidents)} evidence items), "
            f"{len(data.policy_changes)} policy changes"
        )
    else:
        body = build_status(engine, config)
        states = Counter(r.state.value for r in body.routes)
        facts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    engine.dispose()
    print(json.dumps({"cold": times[0], "warm": times[1:], "facts": facts}))


@dataclass(frozen=True)
class Measured:
    store: str
    what: str
    kind: str
    times: list[float]
    limit: float

    @property
    def ratio(self) -> float:
        return max(self.times) / self.limit

    @property
    def ok(self) -> bool:
        return self.ratio < 1.0


def measure(store: str, url: str, size: Size, reports: Path) -> tuple[list[Measured], list[str]]:
    out: list[Measured] = []
    facts: list[str] = []
    for what, limit in (("report", REPORT_LIMIT_S), ("status", STATUS_LIMIT_S)):
        cold: list[float] = []
        warm: list[float] = []
        for _ in range(REPEATS):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    *size_args(size),
                    "--child",
                    url,
                    "--what",
                    what,
                    "--reports",
                    str(reports),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                sys.exit(f"{store} {what} child failed:\n{proc.stderr}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            cold.append(got["cold"])
            warm.extend(got["warm"])
        facts.append(f"{store} {what}: {got['facts']}")
        out.append(Measured(store, what, "cold", cold, limit))
        out.append(Measured(store, what, "warm", warm, limit))
    return out, facts


def size_args(size: Size) -> list[str]:
    return ["--routes", str(size.routes), "--items", str(size.items), "--days", str(size.days)]


def bench_store(
    store: str, url: str, size: Size, reports: Path
) -> tuple[list[Measured], list[str]]:
    print(f"{store}: seeding {size.routes} routes x {size.items} items x {size.days} days ...")
    seconds, counts = build(url, size)
    shown = ", ".join(f"{t} {n:,}" for t, n in counts.items())
    print(f"{store}: seeded in {seconds:.1f} s ({shown})", flush=True)
    return measure(store, url, size, reports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=20)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--quick", action="store_true", help="20 routes x 100 items x 90 days")
    parser.add_argument("--postgres", metavar="URL", help="also bench a fresh database there")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--what", help=argparse.SUPPRESS)
    parser.add_argument("--reports", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = Size(20, 100, 90) if args.quick else Size(args.routes, args.items, args.days)
    if args.child:
        child(args.child, args.what, size, args.reports)
        return 0
    if size.days < 30 or size.routes < 1 or size.items < 10:
        parser.error("need at least 30 days, 1 route and 10 items")

    results: list[Measured] = []
    facts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="routewatch-bench-") as tmp:
        root = Path(tmp)
        if not args.no_sqlite:
            got = bench_store("sqlite", f"sqlite:///{root / 'bench.db'}", size, root / "reports")
            results += got[0]
            facts += got[1]
        if args.postgres:
            with postgres_database(args.postgres) as url:
                got = bench_store("postgresql", url, size, root / "reports")
                results += got[0]
                facts += got[1]

    print()
    print(f"week {last_week()}; {REPEATS} runs each; cold = fresh process, engine and connection")
    for line in facts:
        print(f"  {line}")
    print()
    header = f"{'store':<11} {'what':<7} {'run':<5} {'min s':>7} {'max s':>7} {'limit s':>8}"
    print(f"{header} {'ratio':>6}  verdict")
    for m in results:
        print(
            f"{m.store:<11} {m.what:<7} {m.kind:<5} {min(m.times):>7.3f} {max(m.times):>7.3f} "
            f"{m.limit:>8.1f} {m.ratio:>6.2f}  {'PASS' if m.ok else 'FAIL'}"
        )
    print("(ratio = max seconds / limit)")
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
