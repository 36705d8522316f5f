"""``routewatch judge agreement``: how far the judge agrees with people's ``human_score``s."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import click

from routewatch.cli.options import config_option
from routewatch.cli.table import format_table, num, pct
from routewatch.errors import UsageError
from routewatch.judge.agreement import MEAN_OF_CRITERIA, Agreement, AgreementRow
from routewatch.project import load_project
from routewatch.store.agreement import RECENT_WEEKS, EvalSetAgreement, agreements
from routewatch.store.migrate import open_database

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

    Shows n, the share of equal grades, the mean |human - judge| in scale points,
    Spearman's rho (p) of the grades and Cohen's kappa of pass/fail, over the last
    8 ISO weeks with runs and week by week, for the first sample of each labelled item.
    """
    project = load_project(config_path, dict(os.environ))
    sets = project.eval_sets
    if eval_set is not None:
        if eval_set not in sets:
            known = ", ".join(sorted(sets)) or "(none)"
            raise UsageError(f"unknown eval set {eval_set!r} for --eval-set; known: {known}")
        sets = {eval_set: sets[eval_set]}
    engine = open_database(project.config.database_url)
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
        f"(at most the last {RECENT_WEEKS} ISO weeks with runs), first sample of each item",
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
