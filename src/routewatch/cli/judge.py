"""``routewatch judge``: the judge's agreement with people, and its pairwise preferences.

``agreement`` compares verdicts with items' ``human_score``s; ``pairwise`` lists what the
judge preferred when pairwise mode compared outputs that fell with their baseline's;
``variance`` splits items' score spread into the judge's part and the route's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import click

from routewatch.cli.options import config_option
from routewatch.cli.table import format_table, num, pct, usd
from routewatch.config import load_config
from routewatch.errors import UsageError
from routewatch.judge.agreement import MEAN_OF_CRITERIA, Agreement, AgreementRow
from routewatch.judge.variance import ItemSplit, VarianceSplit
from routewatch.project import load_project
from routewatch.store.agreement import RECENT_WEEKS, EvalSetAgreement, agreements
from routewatch.store.migrate import open_for_reading
from routewatch.store.pairwise import StoredPreference, preferences
from routewatch.store.queries import route_of_run
from routewatch.store.variance import EvalSetVariance, judge_variance

COMPARED = (
    "human_score grades a whole item: each criterion's verdict is compared with it, "
    f"and so is the mean of the item's verdicts over the criteria, shown as {MEAN_OF_CRITERIA}"
)


@click.group("judge")
def judge() -> None:
    """The judge's own quality."""


@judge.command("agreement")
@config_option
@click.option("--eval-set", "eval_set", metavar="NAME", help="Only this eval set.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
def agreement_command(config_path: Path, eval_set: str | None, as_json: bool) -> None:
    """The judge's agreement with human labels (items' `human_score`), per criterion and route.

    Shows n, the share of grades within half a point ("exact": the judge's grade
    rounds to the person's), the mean |human - judge| in scale points,
    Spearman's rho (p) of the grades and Cohen's kappa of pass/fail, over the last
    8 ISO weeks with runs and week by week, for the first sample of each labelled item.
    n counts judge decisions: a cached verdict reused by several runs counts once
    (once a week in the weekly lines).
    """
    project = load_project(config_path, dict(os.environ))
    sets = project.eval_sets
    if eval_set is not None:
        if eval_set not in sets:
            known = ", ".join(sorted(sets)) or "(none)"
            raise UsageError(f"unknown eval set {eval_set!r} for --eval-set; known: {known}")
        sets = {eval_set: sets[eval_set]}
    engine = open_for_reading(project.config.database_url)
    try:
        found = agreements(engine, sets.values(), timezone=project.config.timezone)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(agreement_document(found), indent=2))
    elif not found:
        click.echo("no eval sets found")
    else:
        click.echo("\n\n".join(agreement_text(a) for a in found))


def agreement_document(found: list[EvalSetAgreement]) -> dict[str, Any]:
    """The ``--json`` body: every set, row and week; a null criterion is the mean."""
    return {
        "compared": COMPARED,
        "eval_sets": [dataclasses.asdict(a) for a in found],
    }


def agreement_text(found: EvalSetAgreement) -> str:
    """One eval set's table: a row per criterion and route, then a line per week."""
    lo, hi = found.scale
    head = f"{found.eval_set}: "
    if found.note is not None:
        return head + found.note
    weeks = f"{found.weeks[0]} to {found.weeks[-1]}" if len(found.weeks) > 1 else found.weeks[0]
    lines = [
        f"{head}judge {found.judge}, scale {lo}-{hi}, pass at >= {found.pass_threshold:.2f}, "
        f"{found.labelled_items} labelled item(s); runs of {weeks} "
        f"(at most the last {RECENT_WEEKS} ISO weeks with runs), first sample of each item, "
        "each judge decision (item and verdict) counted once",
        COMPARED,
        "",
    ]
    table: list[list[str]] = []
    notes: dict[str, None] = {}
    for row in found.rows:
        table.append([*_names(row), "all", *_cells(row.overall)])
        table.extend(["", "", w.week, *_cells(w.agreement)] for w in row.weeks)
        for label, note in (
            ("rho", row.overall.spearman.note),
            ("kappa", row.overall.kappa.note),
        ):
            if note is not None:
                notes[f"{label}: {note}"] = None
    lines.append(
        format_table(
            [
                "criterion",
                "route",
                "week",
                "n",
                "exact",
                "mean |diff|",
                "Spearman rho (p)",
                "kappa pass/fail",
            ],
            table,
        )
    )
    if notes:
        lines.append("- undefined: " + "; ".join(notes))
    return "\n".join(lines)


def _names(row: AgreementRow) -> list[str]:
    return [
        MEAN_OF_CRITERIA if row.criterion is None else row.criterion,
        "all routes" if row.route is None else row.route,
    ]


def _cells(a: Agreement) -> list[str]:
    rho = a.spearman
    rho_text = "-"
    if rho.value is not None:
        p = "-" if rho.p_value is None else _p(rho.p_value)
        rho_text = f"{rho.value:.2f} ({p})"
    return [
        str(a.n),
        pct(a.exact),
        num(a.mean_abs_diff, digits=2),
        rho_text,
        num(a.kappa.value, digits=2),
    ]


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


@judge.command("pairwise")
@config_option
@click.option("--route", required=True, metavar="NAME", help="The route whose run to show.")
@click.option(
    "--run",
    "run_id",
    type=int,
    metavar="ID",
    help="This run; default: the route's newest run with comparisons.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
def pairwise_command(config_path: Path, route: str, run_id: int | None, as_json: bool) -> None:
    """What the judge preferred in pairwise mode, item by item, for one run of a route.

    For items whose score fell, the judge compared today's output with the item's last
    good one in both orders: `baseline` or `today` when it chose that output both times,
    `tie` when the orders disagreed, `-` with the error when it gave no answer.
    """
    config = load_config(config_path, dict(os.environ))
    if route not in config.routes:
        known = ", ".join(sorted(config.routes)) or "(none)"
        raise UsageError(f"unknown route {route!r} for --route; known: {known}")
    engine = open_for_reading(config.database_url)
    try:
        if run_id is not None:
            owner = route_of_run(engine, run_id)
            if owner is None:
                raise UsageError(f"no run {run_id} for --run")
            if owner != route:
                raise UsageError(f"run {run_id} is a run of {owner}, not of {route}")
        found = preferences(engine, route=route, run_id=run_id)
    finally:
        engine.dispose()
    if as_json:
        body = {
            "route": route,
            "preferences": [
                {**dataclasses.asdict(p), "at": p.at.astimezone(UTC).isoformat()} for p in found
            ],
        }
        click.echo(json.dumps(body, indent=2))
    elif not found:
        which = f"run {run_id}" if run_id is not None else f"any run of {route}"
        click.echo(f"no pairwise comparisons for {which} (pairwise: true in the eval set?)")
    else:
        click.echo(pairwise_text(found))


def pairwise_text(found: list[StoredPreference]) -> str:
    """A run's comparisons: a summary line, then a row per item, then the reasons."""
    first = found[0]
    answered = [p for p in found if p.preference is not None]
    baseline = sum(p.preference == "baseline" for p in answered)
    lines = [
        f"run {first.run_id} ({first.eval_set}, {first.at:%Y-%m-%d %H:%M} UTC): the judge "
        f"preferred the baseline on {baseline} of {len(answered)} item(s) compared"
        + (
            f"; {len(found) - len(answered)} without an answer"
            if len(answered) < len(found)
            else ""
        ),
        "",
        format_table(
            ["item", "baseline", "today", "preferred", "baseline first", "today first", "cost"],
            [
                [
                    p.item_id,
                    num(p.baseline_score, digits=2),
                    num(p.today_score, digits=2),
                    p.preference or "-",
                    p.baseline_first or "-",
                    p.today_first or "-",
                    usd(p.cost_usd),
                ]
                for p in found
            ],
        ),
    ]
    for p in found:
        why = p.error if p.preference is None else p.reasoning
        if why:
            lines += ["", f"{p.item_id} (baseline from run {p.baseline_run_id}):", why]
    return "\n".join(lines)


SPLIT = (
    "shares of the variance of one graded sample: the judge's (its grades of one output) "
    "and the route's (between its outputs of an item, judge noise taken off); sd in grade points"
)


@judge.command("variance")
@config_option
@click.option("--route", required=True, metavar="NAME", help="The route whose runs to read.")
@click.option(
    "--eval-set", "eval_set", metavar="NAME", help="Only this eval set; default: the route's."
)
@click.option(
    "--runs",
    type=click.IntRange(1, 365),
    default=1,
    show_default=True,
    help="The route's last N completed runs of each eval set.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
def variance_command(
    config_path: Path, route: str, eval_set: str | None, runs: int, as_json: bool
) -> None:
    """How much of the items' score spread is the judge's and how much the route's.

    Needs runs with `samples` > 1 on the route and `judge_samples` > 1 on the judge.
    Per criterion: the judge's and the route's share of the variance, their sd in grade
    points, the (run, item) pairs used, and the items with the most judge noise.
    """
    config = load_config(config_path, dict(os.environ))
    if route not in config.routes:
        known = ", ".join(sorted(config.routes)) or "(none)"
        raise UsageError(f"unknown route {route!r} for --route; known: {known}")
    sets = config.routes[route].evals
    if eval_set is not None:
        if eval_set not in sets:
            raise UsageError(
                f"route {route} does not replay eval set {eval_set!r} (--eval-set); "
                f"its eval sets: {', '.join(sets)}"
            )
        sets = [eval_set]
    engine = open_for_reading(config.database_url)
    try:
        found = judge_variance(engine, route=route, eval_sets=sets, runs=runs)
    finally:
        engine.dispose()
    if as_json:
        body = {"route": route, "split": SPLIT, "eval_sets": [variance_document(f) for f in found]}
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo("\n\n".join(variance_text(f) for f in found))


def variance_document(found: EvalSetVariance) -> dict[str, Any]:
    """One eval set's ``--json`` body: variances in squared grade points, and shares."""
    return {
        "eval_set": found.eval_set,
        "run_ids": list(found.run_ids),
        "first_at": found.first_at.isoformat() if found.first_at else None,
        "last_at": found.last_at.isoformat() if found.last_at else None,
        "route_samples": found.route_samples,
        "judge_samples": found.judge_samples,
        "note": found.note,
        "criteria": [
            {"criterion": c.criterion, **_split_document(c.split)} for c in found.criteria
        ],
    }


def _split_document(split: VarianceSplit) -> dict[str, Any]:
    return {
        "judge_variance": split.judge_variance,
        "route_variance": split.route_variance,
        "judge_share": split.judge_share,
        "route_share": split.route_share,
        "items": split.items,
        "noisiest": [
            {
                "item_id": i.item_id,
                "judge_variance": i.judge_variance,
                "route_variance": i.route_variance,
                "judge_share": i.judge_share,
                "runs": i.units,
            }
            for i in split.noisiest
        ],
    }


def variance_text(found: EvalSetVariance) -> str:
    """One eval set: a line on the runs read, a row per criterion, the noisiest items."""
    head = f"{found.route} on {found.eval_set}: "
    if found.note is not None:
        return head + found.note
    span = f"{found.last_at:%Y-%m-%d}"
    if found.first_at is not None and f"{found.first_at:%Y-%m-%d}" != span:
        span = f"{found.first_at:%Y-%m-%d} to {span}"
    lines = [
        f"{head}{len(found.run_ids)} run(s) of {span}, {found.route_samples} route "
        f"sample(s) per item, {found.judge_samples} judge sample(s) per output",
        SPLIT,
        "",
        format_table(
            ["criterion", "judge share", "route share", "judge sd", "route sd", "items"],
            [
                [
                    c.criterion,
                    pct(c.split.judge_share),
                    pct(c.split.route_share),
                    _sd(c.split.judge_variance),
                    _sd(c.split.route_variance),
                    str(c.split.items),
                ]
                for c in found.criteria
            ],
        ),
    ]
    noisy = [(c.criterion, i) for c in found.criteria for i in c.split.noisiest]
    if noisy:
        lines += [
            "",
            "most judge noise:",
            format_table(
                ["criterion", "item", "judge sd", "route sd", "judge share", "runs"],
                [_noisy_row(criterion, i) for criterion, i in noisy],
            ),
        ]
    return "\n".join(lines)


def _noisy_row(criterion: str, item: ItemSplit) -> list[str]:
    return [
        criterion,
        item.item_id,
        _sd(item.judge_variance),
        _sd(item.route_variance),
        pct(item.judge_share),
        str(item.units),
    ]


def _sd(variance: float) -> str:
    return num(max(variance, 0.0) ** 0.5, digits=2)
