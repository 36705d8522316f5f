"""The report as one self-contained HTML file: Jinja2 with autoescape, CSS and SVG inline.

Nothing in the page is fetched: no script, font or image from the network, and a
Content-Security-Policy that forbids them anyway, so it reads the same mailed, archived
or printed. Model output is text: Jinja2 escapes every value, and the SVG charts escape
their own labels (``report.svg``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy import Engine

from routewatch import __version__
from routewatch.config import Config
from routewatch.evalset import EvalSet
from routewatch.files import write_atomic
from routewatch.judge.agreement import Agreement
from routewatch.report.agreement import AgreementSection
from routewatch.report.data import (
    HISTORY_WEEKS,
    DetectorVerdict,
    IncidentView,
    ReportData,
    Section,
    Window,
    load_report,
)
from routewatch.report.svg import (
    CostQualityPoint,
    LineSeries,
    ScorePoint,
    TimelineEvent,
    cost_quality_chart,
    lines_chart,
    score_chart,
    score_domain,
    timeline,
)
from routewatch.store.agreement import AgreementTrend
from routewatch.visible import visible

NONE = "\u2013"
"""Shown for a missing figure (an en dash)."""
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; base-uri 'none'"
)
"""The page's policy: inline styles and data images only; never a script or a fetch."""
CRITERION_COLOURS = ("#2c7bb6", "#d7191c", "#1a9641", "#7b3294", "#f28e2b", "#555555")
"""Line colour per criterion in the agreement charts, in the eval set's order, repeating."""
_TREND_GREY = "#555555"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgreementGroup:
    """One judge on one eval set in the agreement section: its chart and its criteria."""

    judge: str
    eval_set: str
    scale: tuple[int, int]
    pass_threshold: float
    trends: tuple[AgreementTrend, ...]
    chart: Markup | None
    """None when no week has enough pairs to draw."""


def _environment(timezone: str = "UTC") -> Environment:
    # autoescape=True, not select_autoescape(): ECOSYSTEM trap 10.
    env = Environment(
        loader=PackageLoader("routewatch.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_displayed,
    )
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    env.filters["usd"] = dollars
    zone = ZoneInfo(timezone)
    env.filters["when"] = lambda value: _when(value, zone)
    return env


def _displayed(value: Any) -> Any:
    """Every text the report shows, its control and bidi characters made visible.

    Markup is the report's own (charts): already built from shown text.
    """
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def _num(value: float | None, digits: int = 3) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def dollars(value: float | None) -> str:
    """Dollars: cents from $1 up, else three significant figures ($0.693, $0.000140).

    Eval runs of cheap routes cost fractions of a cent; four decimals made them $0.0001.
    """
    if value is None:
        return NONE
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}"
    decimals = 2 - math.floor(math.log10(abs(value)))
    return f"${value:.{decimals}f}"


def _when(value: datetime | None, zone: ZoneInfo) -> str:
    return NONE if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


CHANGE_KINDS = {
    # kind: (how the change is shown, whether a rise is better)
    "score": ("points", True),
    "pass": ("percentage points", True),
    "errors": ("percentage points", False),
    "latency": ("relative", False),
    "cost": ("relative", False),
}
"""How ``change`` shows each figure's move from the previous period."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A figure's move from the previous period, as the routes table shows it."""

    text: str
    """``+0.012``, ``-4.1 pt``, ``+12%`` (with a real minus sign), or ``±0``."""
    tone: str
    """``better``, ``worse`` or ``same``."""
    before: str
    """The previous period's value, formatted like the current one."""


def change(now: float | None, before: float | None, kind: str) -> Change | None:
    """How a figure moved since the previous period; None when either side is missing.

    Scores move in points (``+0.012``), rates in percentage points (``-4.1 pt``), latency
    and cost relative to the previous value (``+12%``). A move that rounds to nothing
    shows ``±0``, neither better nor worse.
    """
    if now is None or before is None:
        return None
    shown, rise_is_better = CHANGE_KINDS[kind]
    if shown == "points":
        diff, text, shown_before = now - before, f"{now - before:+.3f}", _num(before)
        same = abs(diff) < 0.0005
    elif shown == "percentage points":
        diff = (now - before) * 100
        text, shown_before, same = f"{diff:+.1f} pt", _pct(before), abs(diff) < 0.05
    else:
        if before <= 0:
            return None
        diff = (now / before - 1) * 100
        text, same = f"{diff:+.0f}%", abs(diff) < 0.5
        shown_before = dollars(before) if kind == "cost" else f"{before:.0f} ms"
    if same:
        return Change(text="\u00b10", tone="same", before=shown_before)
    better = (diff > 0) == rise_is_better
    return Change(
        text=text.replace("-", "\u2212"), tone="better" if better else "worse", before=shown_before
    )


def detection_text(verdict: DetectorVerdict) -> str:
    """One detector's case against a run, in words: what it found against what limit."""
    d, p, limit = verdict.detector, verdict.p_value, verdict.threshold
    shown_p = f"p = {p:.2g}" if p is not None else None
    if d == "critical-item":
        runs = f" in {limit:.0f} runs in a row" if limit is not None else ""
        return f"critical-item: the item failed{runs}"
    if d == "sigma":
        return "sigma: below the lower limit" + (f" of {limit:.3f}" if limit is not None else "")
    if d == "cusum":
        return "cusum (slow drift): over its limit" + (
            f" of {limit:.2f}" if limit is not None else ""
        )
    if d in ("latency-p95", "cost"):
        parts = [shown_p] if shown_p else []
        if limit is not None:
            parts.insert(
                0, f"past {limit:.0f} ms" if d == "latency-p95" else f"past {dollars(limit)}"
            )
        return f"{d}: {', '.join(parts) or 'fired'}"
    # The p-valued tests: paired-count, paired-weighted, paired-graded, error-rate.
    under = f", under its limit of {limit:.2g}" if limit is not None else ""
    return f"{d}: {shown_p or 'no p-value'}{under}"


def observed_text(incident: IncidentView) -> str:
    """What the incident is about, measured against its baseline, in words."""
    metric, seen, base = incident.metric, incident.observed, incident.baseline_mean
    if metric.startswith("critical:"):
        return f"Critical item {metric.removeprefix('critical:')} scored {_num(seen)}"
    if metric == "error_rate":
        name, shown, baseline = "Error rate", _pct(seen), _pct(base)
    elif metric == "p95_latency_ms":
        name, shown, baseline = "p95 latency", f"{seen:.0f} ms", f"{_num(base, 0)} ms"
    elif metric == "cost_per_call_usd":
        name, shown, baseline = "Cost per call", dollars(seen), dollars(base)
    else:
        name, shown, baseline = metric.capitalize(), _num(seen), _num(base)
    return name + " " + shown + (f" against a baseline of {baseline}" if base is not None else "")


def _score_points(section: Section) -> list[ScorePoint]:
    return [
        ScorePoint(
            at=p.at,
            score=p.score,
            mean=p.mean,
            sd=p.sd,
            lower_limit=p.lower_limit,
            state=p.state,
            in_week=p.in_window,
        )
        for p in section.points
    ]


def _score_svg(section: Section, domain: tuple[float, float]) -> Markup:
    chart = score_chart(
        _score_points(section), title=f"{section.route} · {section.eval_set}", domain=domain
    )
    # The SVG escapes its own text; Markup marks it as already safe HTML.
    return Markup(chart)  # noqa: S704


def _shown(a: Agreement, min_pairs: int, which: str) -> float | None:
    """Kappa or rho for a chart: none below ``min_pairs`` decisions."""
    if a.n < min_pairs:
        return None
    return a.kappa.value if which == "kappa" else a.spearman.value


def _agreement_groups(section: AgreementSection | None) -> list[AgreementGroup]:
    """The section's trends grouped by judge and eval set, each with its chart."""
    if section is None:
        return []
    groups = []
    for (judge, eval_set), found in groupby(section.trends, key=lambda t: (t.judge, t.eval_set)):
        trends = tuple(found)
        series, legend = [], []
        for i, trend in enumerate(trends):
            colour = CRITERION_COLOURS[i % len(CRITERION_COLOURS)]
            for which in ("kappa", "rho"):
                values = tuple(_shown(w.agreement, section.min_pairs, which) for w in trend.weeks)
                label = f"{trend.criterion} {which}"
                series.append(
                    LineSeries(label=label, values=values, colour=colour, dashed=which == "rho")
                )
            legend.append((trend.criterion, colour, False))
        legend += [("kappa", _TREND_GREY, False), ("Spearman rho", _TREND_GREY, True)]
        drawn = any(v is not None for x in series for v in x.values)
        chart = lines_chart(
            series, labels=section.weeks, title=f"{judge} · {eval_set}", legend=legend
        )
        groups.append(
            AgreementGroup(
                judge=judge,
                eval_set=eval_set,
                scale=trends[0].scale,
                pass_threshold=trends[0].pass_threshold,
                trends=trends,
                chart=Markup(chart) if drawn else None,  # noqa: S704 - escaped inside report.svg
            )
        )
    return groups


@dataclass(frozen=True, slots=True, kw_only=True)
class GlanceLine:
    """One line of the report's summary, linking to an incident's card when it names one."""

    text: str
    incident_id: int | None = None


def at_a_glance(data: ReportData) -> list[GlanceLine]:
    """What a reader should take from the period, before the tables.

    Each route and eval set that is not healthy at its last run in the period (with its
    last score against the baseline, and its open incident), each policy change that
    demoted a route, and how many are healthy.
    """
    lines: list[GlanceLine] = []
    healthy = 0
    for s in data.sections:
        last = next((p for p in reversed(s.points) if p.in_window), None)
        if last is None:
            continue
        if last.state == "healthy":
            healthy += 1
            continue
        if last.state == "unknown":
            continue  # still learning its baseline: nothing to say yet
        incident = shown_incident(data, s)
        text = f"{s.route} · {s.eval_set}: {last.state}; last run {_num(last.score)}"
        if s.summary.baseline_mean is not None:
            text += f" against a baseline of {_num(s.summary.baseline_mean)}"
        if incident is not None:
            opened = incident.opened_at.astimezone(ZoneInfo(data.timezone))
            text += f"; open incident on {incident.metric} since {opened:%b %d}"
        lines.append(GlanceLine(text=text, incident_id=incident.id if incident else None))
    for c in data.policy_changes:
        if c.demoted:
            text = (
                f"policy {c.policy} v{c.version}: demoted {', '.join(c.demoted)}; "
                f"the chain is now {' → '.join(c.chain) or 'empty'}"
            )
            lines.append(GlanceLine(text=text, incident_id=c.incident_id))
    with_runs = sum(1 for s in data.sections if any(p.in_window for p in s.points))
    if with_runs:
        summary = f"{healthy} of {with_runs} route · eval set pairs healthy at their last run"
        lines.append(GlanceLine(text=summary))
    return lines


def shown_incident(data: ReportData, section: Section) -> IncidentView | None:
    """The open incident to name beside a section's state: its newest, as ``status`` does."""
    open_ = [
        i
        for i in data.incidents
        if (i.route, i.eval_set) == (section.route, section.eval_set) and i.status != "resolved"
    ]
    return max(open_, key=lambda i: (i.opened_at, i.id), default=None)


def _last_state(section: Section) -> str:
    """The state of the section's last run in the window; ``unknown`` without one."""
    return next((p.state for p in reversed(section.points) if p.in_window), "unknown")


def render_report(data: ReportData) -> str:
    """The report page for ``data``."""
    # One y range for all: the charts are stacked to be compared.
    domain = score_domain(_score_points(s) for s in data.sections)
    charts = {(s.route, s.eval_set): _score_svg(s, domain) for s in data.sections}
    cost_quality = Markup(  # noqa: S704 - escaped inside report.svg
        cost_quality_chart(
            [
                CostQualityPoint(
                    label=f"{s.route} · {s.eval_set}",
                    score=s.summary.score,
                    usd_per_mtok=s.summary.usd_per_mtok,
                    state=_last_state(s),
                )
                for s in data.sections
            ]
        )
    )
    events = [
        TimelineEvent(
            at=i.opened_at,
            kind="incident.opened",
            label=f"#{i.id} {i.route} · {i.eval_set} · {i.metric}",
        )
        for i in data.incidents
        if data.window.start <= i.opened_at < data.window.end
    ]
    events += [
        TimelineEvent(
            at=i.resolved_at,
            kind="incident.resolved",
            label=f"#{i.id} {i.route} · {i.eval_set} resolved"
            + ("" if i.resolved_by in (None, "routewatch") else " by hand"),
        )
        for i in data.incidents
        if i.resolved_at is not None and data.window.start <= i.resolved_at < data.window.end
    ]
    events += [
        TimelineEvent(
            at=c.at, kind="policy.changed", label=f"{c.policy} v{c.version}: {' → '.join(c.chain)}"
        )
        for c in data.policy_changes
    ]
    events.sort(key=lambda e: e.at)
    timeline_svg = Markup(  # noqa: S704 - escaped inside report.svg
        timeline(events, start=data.window.start, end=data.window.end)
    )
    template = _environment(data.timezone).get_template("report.html")
    return template.render(
        data=data,
        charts=charts,
        cost_quality=cost_quality,
        timeline=timeline_svg,
        csp=CSP,
        version=__version__,
        history_weeks=HISTORY_WEEKS,
        detection_text=detection_text,
        observed_text=observed_text,
        change=change,
        agreement_groups=_agreement_groups(data.agreement),
        glance=at_a_glance(data),
        state_incidents={(s.route, s.eval_set): shown_incident(data, s) for s in data.sections},
    )


def report_path(config: Config, window: Window) -> Path:
    """Where the report for ``window`` goes by default: ``reports.dir/routewatch-<slug>.html``."""
    return Path(config.reports.dir) / f"routewatch-{window.slug}.html"


def write_report(
    engine: Engine,
    config: Config,
    window: Window,
    *,
    output: Path | None = None,
    now: datetime | None = None,
    eval_sets: Mapping[str, EvalSet] | None = None,
) -> Path:
    """Render the report for ``window`` and write it atomically; returns its path.

    Raises:
        OutputError: the report's folder or file cannot be written.

    ``eval_sets`` carry the labels for judge agreement; without them they are read
    from the config's ``eval_dir``.
    """
    html = render_report(load_report(engine, config, window, now=now, eval_sets=eval_sets))
    path = output or report_path(config, window)
    write_atomic(path, html)
    return path
