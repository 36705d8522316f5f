"""PURE: the weekly report's charts as inline SVG strings.

``report/render.py`` embeds each string with Jinja2's ``|safe``, so this module escapes
every piece of text it takes from the data (route names, labels, titles, states). The
markup references nothing outside itself (no links, fonts, scripts or event handlers), uses
a generic font and light print-friendly colours, and the same input gives the same string.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from routewatch.visible import visible

STATE_COLOURS: dict[str, str] = {
    "healthy": "#1a9641",
    "degraded": "#d7191c",
    "erroring": "#7b3294",
    "unknown": "#888888",
    "judge_suspect": "#f28e2b",
    "failed": "#000000",
}
"""Marker colour per route state; a state not listed here is drawn as ``unknown``."""

_CIRCLE = "m-4.5 5a4.5 4.5 0 1 0 9 0a4.5 4.5 0 1 0-9 0"
EVENT_STYLES: dict[str, tuple[str, str, str]] = {
    "incident.opened": ("l5 9h-10z", "#d7191c", "incident opened"),
    "incident.resolved": (_CIRCLE, "#1a9641", "incident resolved"),
    "policy.changed": ("l5 5-5 5-5-5z", "#2c7bb6", "policy changed"),
}
"""Timeline marker per event kind: (shape as path data from its top centre, colour, legend)."""
OTHER_EVENT = ("m-4 1h8v8h-8z", "#888888", "other")

LABEL_LIMIT = 40
"""Point and event labels longer than this are cut with an ellipsis (the tooltip keeps all)."""
NARROW_BAND = 0.3
"""A score chart whose values span less than this zooms its y axis in from 0..1."""
MAX_LANES = 12
"""Timeline rows; beyond this, labels share the first row rather than grow without bound."""

_CHAR_W = 6.0
"""Rough width of one character at the 11 px font size, used to lay labels out."""
_LANE_H = 18.0
_WEEK_FILL = "#fdf3cf"
_BAND_FILL = "#c6dbef"
_THRESHOLD = "#b2182b"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
"""English month names, independent of the process locale, so the output is deterministic."""
_TICK_STEPS_DAYS = (1, 2, 7, 14, 28, 56, 91, 182, 364)
_INVALID_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 forbids even when escaped (controls, lone surrogates)."""
_Fn = Callable[[float], float]
_Box = tuple[float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScorePoint:
    """One run of one route on the score chart."""

    at: datetime
    score: float | None
    mean: float | None = None
    sd: float | None = None
    lower_limit: float | None = None
    state: str = "healthy"
    in_week: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CostQualityPoint:
    """One route (or route and eval set) on the cost against quality scatter."""

    label: str
    score: float | None
    usd_per_mtok: float | None
    state: str = "unknown"
    """The route's state at its last run: the point's colour, as in the score charts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LineSeries:
    """One line of a ``lines_chart``: a value (or a gap) per x label."""

    label: str
    """Named in each point's tooltip."""
    values: tuple[float | None, ...]
    colour: str
    dashed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEvent:
    """An incident or policy change on the week's timeline."""

    at: datetime
    kind: str
    label: str


def _clean(text: str, limit: int | None = None) -> str:
    """``text`` on one line, controls and bidi shown (``visible``), cut to ``limit``."""
    clean = " ".join(_INVALID_XML.sub("", visible(text)).split())
    if limit is not None and len(clean) > limit:
        clean = clean[: max(limit - 1, 0)] + "…"
    return clean


def _esc(text: str, limit: int | None = None) -> str:
    return html.escape(_clean(text, limit), quote=True)


def _n(x: float) -> str:
    """A coordinate with one decimal at most, to keep the markup small."""
    s = f"{x:.1f}".removesuffix(".0")
    return "0" if s == "-0" else s


def _fin(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"chart times must be timezone-aware, got {at.isoformat()}")
    return at


def _text(x: float, y: float, text: str, attrs: str = "", *, limit: int | None = None) -> str:
    return f'<text x="{_n(x)}" y="{_n(y)}"{attrs}>{_esc(text, limit)}</text>'


def _rect(x: float, y: float, w: float, h: float, attrs: str) -> str:
    return f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}"{attrs}/>'


def _line(x1: float, y1: float, x2: float, y2: float, attrs: str) -> str:
    return f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"{attrs}/>'


def _svg(width: float, height: float, label: str, body: Sequence[str]) -> str:
    w, h = _n(width), _n(height)
    attrs = (
        f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11"'
    )
    head = f'<svg xmlns="http://www.w3.org/2000/svg" {attrs} role="img" aria-label="{_esc(label)}">'
    return "\n".join([head, *body, "</svg>"])


def _message(label: str, text: str, width: int) -> str:
    return _svg(width, 40, label, [_text(width / 2, 24, text, ' text-anchor="middle" fill="#555"')])


def _scale(lo: float, hi: float, a: float, b: float, t: _Fn = float) -> _Fn:
    """Map [lo, hi] onto [a, b], linearly in ``t`` (``math.log10`` for a log axis)."""
    t_lo, t_hi = t(lo), t(hi)
    k = (b - a) / (t_hi - t_lo) if t_hi > t_lo else 0.0
    return lambda v: a + (t(v) - t_lo) * k


def _nice_ticks(lo: float, hi: float, count: int) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) within [lo, hi]."""
    raw = (hi - lo) / count if hi > lo else 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _day_ticks(start: datetime, end: datetime, most: int) -> list[datetime]:
    """Midnights (in ``start``'s zone) from start to end: daily, or Mondays every few weeks."""
    span = (end - start).total_seconds() / 86400
    fits = (s for s in _TICK_STEPS_DAYS if span / s <= most)
    step = next(fits, 364 * math.ceil(span / 364 / most))
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if day < start:
        day += timedelta(days=1)
    if step >= 7:
        day += timedelta(days=-day.weekday() % 7)
    ticks = []
    while day <= end:
        ticks.append(day)
        day += timedelta(days=step)
    return ticks


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """(index, value) of the values that are not None, one list per unbroken run."""
    groups = groupby(enumerate(values), key=lambda iv: iv[1] is not None)
    return [[(i, v) for i, v in group if v is not None] for present, group in groups if present]


def _path_d(coords: Sequence[tuple[float, float]]) -> str:
    if len(coords) == 1:  # a lone value still shows, as a short dash
        return f"M{_n(coords[0][0] - 4)} {_n(coords[0][1])}h8"
    return "M" + " ".join(f"{_n(x)} {_n(y)}" for x, y in coords)


def _x_tick(x: float, y: float, label: str) -> list[str]:
    attrs = ' class="xtick" text-anchor="middle" font-size="10"'
    return [_line(x, y, x, y + 4, ' stroke="#999"'), _text(x, y + 14, label, attrs)]


def _y_grid(y0: float, y1: float, fy: _Fn, x0: float, x1: float) -> list[str]:
    """Horizontal grid lines with their labels, and the x axis line at the bottom."""
    out = []
    for v in _nice_ticks(y0, y1, 4):
        out.append(_line(x0, fy(v), x1, fy(v), ' stroke="#e3e3e3"'))
        out.append(_text(x0 - 4, fy(v) + 3, f"{v:.3g}", ' text-anchor="end" font-size="10"'))
    return [*out, _line(x0, fy(y0), x1, fy(y0), ' stroke="#999"')]


def _free_row(placed: list[_Box], x0: float, x1: float, rows: Sequence[float], h: float) -> float:
    """Greedy: the first of ``rows`` where [x0, x1] clears ``placed`` (``h`` apart), else 0."""

    def clear(r: float) -> bool:
        return not any(a < x1 + 4 and x0 < b + 4 and abs(y - r) < h for a, b, y in placed)

    y = next((r for r in rows if clear(r)), rows[0])
    placed.append((x0, x1, y))
    return y


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, width: float) -> list[str]:
    """One row of (swatch drawn around the origin, label) pairs; what does not fit is left out."""
    out = []
    for swatch, label in items:
        step = 24 + len(_clean(label, 24)) * 5.5
        if x + step > width + 8:
            break
        text = _text(14, 0, label, ' font-size="10"', limit=24)
        out.append(f'<g transform="translate({_n(x)} {_n(y)})">{swatch}{text}</g>')
        x += step
    return out


def _score_domain(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo >= NARROW_BAND:
        return min(0.0, lo), max(1.0, hi)
    pad = max(0.02, (hi - lo) / 4)
    y0 = max(min(0.0, lo), math.floor((lo - pad) * 20) / 20)
    return y0, min(max(1.0, hi), math.ceil((hi + pad) * 20) / 20)


def _score_values(points: Sequence[ScorePoint]) -> list[float]:
    """What a score chart must show: scores, lower limits and the baseline bands' edges."""
    values = [v for p in points for v in (_fin(p.score), _fin(p.lower_limit)) if v is not None]
    for p in points:
        mean = _fin(p.mean)
        if mean is not None:
            sd = abs(_fin(p.sd) or 0.0)
            values += [mean - sd, mean + sd]
    return values


def score_domain(charts: Iterable[Sequence[ScorePoint]]) -> tuple[float, float]:
    """One y range for several score charts, so that charts shown together compare.

    0..1, or narrower when every chart's values lie within ``NARROW_BAND``.
    """
    return _score_domain([v for points in charts for v in _score_values(points)])


def score_chart(
    points: Sequence[ScorePoint],
    *,
    title: str,
    width: int = 640,
    height: int = 200,
    domain: tuple[float, float] | None = None,
) -> str:
    """Scores of one route over time, with its baseline band, threshold and run states.

    The y axis runs 0..1 unless every score, band edge and threshold lies within
    ``NARROW_BAND``, when it zooms in around them. A run without a score leaves a gap in the
    line and gets a cross at the bottom; runs outside the report week are drawn lighter.

    Args:
        points: The runs, in any order; times must be timezone-aware.
        title: Shown above the chart and used as its accessible name.
        width: Width in pixels.
        height: Height in pixels.
        domain: The y range (``score_domain`` of every chart shown with this one);
            by default this chart's own.

    Returns:
        An ``<svg>`` element; a small one saying "no runs" when ``points`` is empty.

    Raises:
        ValueError: A time is naive.
    """
    if not points:
        return _message(f"{title}: no runs", "no runs", width)
    pts = sorted(points, key=lambda p: _aware(p.at).timestamp())
    start, end = pts[0].at, pts[-1].at
    if end - start < timedelta(hours=1):
        start, end = start - timedelta(hours=12), end + timedelta(hours=12)
    px0, px1, py0, py1 = 40.0, width - 12.0, 24.0, height - 40.0
    fx = _scale(start.timestamp(), end.timestamp(), px0 + 6, px1 - 6)
    xs = [fx(p.at.timestamp()) for p in pts]
    scores, means = [_fin(p.score) for p in pts], [_fin(p.mean) for p in pts]
    sds = [abs(_fin(p.sd) or 0.0) for p in pts]
    limits = [_fin(p.lower_limit) for p in pts]
    y0, y1 = domain if domain is not None else _score_domain(_score_values(pts))
    fy = _scale(y0, y1, py1, py0)
    body = [_text(4, 15, title, ' font-size="12" font-weight="bold"', limit=int(width / 7))]
    legend: list[tuple[str, str]] = []
    week = [i for i, p in enumerate(pts) if p.in_week]
    if week and len(week) < len(pts):  # shading every run would contrast with nothing
        a, b = week[0], week[-1]
        wx0 = (xs[a - 1] + xs[a]) / 2 if a else px0
        wx1 = (xs[b] + xs[b + 1]) / 2 if b + 1 < len(pts) else px1
        body.append(_rect(wx0, py0, wx1 - wx0, py1 - py0, f' class="week" fill="{_WEEK_FILL}"'))
        legend.append((_rect(0, -8, 10, 8, f' fill="{_WEEK_FILL}"'), "report week"))
    body += _y_grid(y0, y1, fy, px0, px1)
    for day in _day_ticks(start, end, max(2, int((px1 - px0) / 70))):
        body += _x_tick(fx(day.timestamp()), py1, f"{_MONTHS[day.month - 1]} {day.day}")
    for run in _runs(means):
        cols = [(xs[i], fy(m + sds[i]), fy(m - sds[i])) for i, m in run]
        if len(cols) == 1:  # widen a lone baseline so that it shows
            cols = [(cols[0][0] + dx, *cols[0][1:]) for dx in (-4, 4)]
        edge = [(x, hi) for x, hi, _ in cols] + [(x, lo) for x, _, lo in reversed(cols)]
        coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in edge)
        body.append(f'<polygon class="band" points="{coords}" fill="{_BAND_FILL}" opacity=".7"/>')
    if any(m is not None for m in means):
        legend.append((_rect(0, -8, 10, 8, f' fill="{_BAND_FILL}"'), "baseline ± sd"))
    if limit_runs := _runs(limits):
        d = "".join(_path_d([(xs[i], fy(v)) for i, v in run]) for run in limit_runs)
        dash = f'fill="none" stroke="{_THRESHOLD}" stroke-width="1.2" stroke-dasharray="4 3"'
        body.append(f'<path class="threshold" d="{d}" {dash}/>')
        legend.append((f'<path d="M0 -4h10" {dash}/>', "threshold"))
    if score_runs := _runs(scores):
        d = "".join(_path_d([(xs[i], fy(v)) for i, v in run]) for run in score_runs)
        line = 'fill="none" stroke="#555" stroke-width="1.2"'
        body.append(f'<path class="score-line" d="{d}" {line}/>')
    r = "3" if len(pts) <= 60 else "2"
    for p, x, s in zip(pts, xs, scores, strict=True):
        colour = STATE_COLOURS.get(p.state, STATE_COLOURS["unknown"])
        fade = "" if p.in_week else ' opacity=".45"'
        shown = "no score" if s is None else f"score {s:.3f}"
        tip = f"<title>{_esc(f'{p.at:%Y-%m-%d %H:%M} · {shown} · {p.state}')}</title>"
        cross = f'd="M{_n(x - 3)} {_n(py1 - 7)}l6 6m0 -6l-6 6" stroke="{colour}" stroke-width="1.5"'
        dot = f'cx="{_n(x)}" cy="{_n(fy(s))}" r="{r}" fill="{colour}"' if s is not None else ""
        el, at = ("circle", dot) if dot else ("path", cross)
        body.append(f'<{el} class="marker" {at}{fade}>{tip}</{el}>')
    legend += _state_swatches({p.state for p in pts}, failed_cross=True)
    body += _legend(legend, 4, height - 8, width)
    return _svg(width, height, title, body)


def _state_swatches(states: set[str], *, failed_cross: bool = False) -> list[tuple[str, str]]:
    """Legend entries for ``states``, in ``STATE_COLOURS``' order, then any others.

    ``failed_cross``: a failed run is drawn as a cross in the score charts (it seldom
    has a score), so its swatch is one too.
    """
    out = []
    for state in [s for s in STATE_COLOURS if s in states] + sorted(states - STATE_COLOURS.keys()):
        colour = STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
        swatch = f'<circle cx="5" cy="-4" r="4" fill="{colour}"/>'
        if failed_cross and state == "failed":
            swatch = f'<path d="M1 -8l7 7m0 -7l-7 7" stroke="{colour}" stroke-width="1.5"/>'
        out.append((swatch, state))
    return out


def _stroke(colour: str, dashed: bool) -> str:
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    return f'fill="none" stroke="{_esc(colour)}" stroke-width="1.5"{dash}'


def lines_chart(
    series: Sequence[LineSeries],
    *,
    labels: Sequence[str],
    title: str,
    legend: Sequence[tuple[str, str, bool]] = (),
    domain: tuple[float, float] = (-1.0, 1.0),
    width: int = 640,
    height: int = 180,
) -> str:
    """Lines over evenly spaced categories (weeks), with gaps where a value is None.

    Args:
        series: The lines; each has one value per label.
        labels: The x axis, left to right.
        title: Shown above the chart and used as its accessible name.
        legend: (label, colour, dashed) entries drawn under the chart.
        domain: The y axis range, widened to any value outside it.
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        An ``<svg>`` element; a small one saying "no values" when every value is None.
    """
    values = [f for s in series for v in s.values if (f := _fin(v)) is not None]
    if not labels or not values:
        return _message(f"{title}: no values", "no values", width)
    px0, px1, py0, py1 = 40.0, width - 12.0, 24.0, height - 40.0
    xs = [px0 + (i + 0.5) * (px1 - px0) / len(labels) for i in range(len(labels))]
    y0, y1 = min(domain[0], *values), max(domain[1], *values)
    fy = _scale(y0, y1, py1, py0)
    body = [_text(4, 15, title, ' font-size="12" font-weight="bold"', limit=int(width / 7))]
    body += _y_grid(y0, y1, fy, px0, px1)
    for x, label in zip(xs, labels, strict=True):
        body += _x_tick(x, py1, label)
    for s in series:
        runs = _runs([_fin(v) for v in s.values])
        d = "".join(_path_d([(xs[i], fy(v)) for i, v in run]) for run in runs)
        body += [f'<path class="series" d="{d}" {_stroke(s.colour, s.dashed)}/>'] if runs else []
        for i, v in (p for run in runs for p in run):
            tip = f"<title>{_esc(f'{s.label} · {labels[i]} · {v:.2f}')}</title>"
            at = f'cx="{_n(xs[i])}" cy="{_n(fy(v))}" r="2.5" fill="{_esc(s.colour)}"'
            body.append(f'<circle class="point" {at}>{tip}</circle>')
    swatches = [(f'<path d="M0 -4h10" {_stroke(c, dashed)}/>', t) for t, c, dashed in legend]
    return _svg(width, height, title, [*body, *_legend(swatches, 4, height - 8, width)])


def cost_quality_chart(
    points: Sequence[CostQualityPoint], *, width: int = 640, height: int = 320
) -> str:
    """Quality (y) against blended price (x) per route, each point labelled.

    Points are coloured by state (``STATE_COLOURS``), with a legend of the states shown.
    The x axis is logarithmic when the prices span more than 10x (and are all positive),
    else linear from 0. Points without a score or a price, or with a negative price, are
    left out and named in a note under the chart.

    Args:
        points: The routes to place.
        width: Width in pixels.
        height: Height in pixels.

    Returns:
        An ``<svg>`` element; a small one saying "no data" when no point can be placed.
    """
    label = "Quality against cost per route"
    state_of = {p.label: p.state for p in points}
    pairs = [(p.label, _fin(p.score), _fin(p.usd_per_mtok)) for p in points]
    shown = [(n, s, c) for n, s, c in pairs if s is not None and c is not None and c >= 0]
    skipped = [n for n, s, c in pairs if s is None or c is None or c < 0]
    if not shown:
        note = f" ({len(skipped)} without a score or a price)" if skipped else ""
        return _message(label, f"no data{note}", width)
    px0, px1, py0, py1 = 44.0, width - 14.0, 20.0, height - (76.0 if skipped else 62.0)
    lo, hi = min(c for *_, c in shown), max(c for *_, c in shown)
    log = lo > 0 and hi / lo > 10
    k0, k1 = (math.floor(math.log10(lo)), math.ceil(math.log10(hi))) if log else (0, 0)
    if log:
        x_ticks = [10.0**k for k in range(k0, k1 + 1)]
    else:
        x_ticks = _nice_ticks(0.0, hi if hi > 0 else 1.0, 5)
        while x_ticks[-1] < hi:
            x_ticks.append(round(2 * x_ticks[-1] - x_ticks[-2], 10))
    fx = _scale(x_ticks[0], x_ticks[-1], px0, px1, math.log10 if log else float)
    scores = [s for _, s, _ in shown]
    y0, y1 = min(0.0, *scores), max(1.0, *scores)
    fy = _scale(y0, y1, py1, py0)
    body = _y_grid(y0, y1, fy, px0, px1)
    for v in x_ticks:
        body += _x_tick(fx(v), py1, f"${v:,.6g}")
    axis = "$ per million tokens (blended)" + (" · log scale" if log else "")
    body.append(_text((px0 + px1) / 2, py1 + 32, axis, ' text-anchor="middle"'))
    mid = (py0 + py1) / 2
    body.append(
        _text(12, mid, "score", f' transform="rotate(-90 12 {_n(mid)})" text-anchor="middle"')
    )
    placed: list[_Box] = []  # x0, x1, baseline of each label drawn
    for name, score, price in shown:
        cx, cy = fx(price), fy(score)
        w = len(_clean(name, LABEL_LIMIT)) * _CHAR_W
        right = cx + 6 + w <= width - 2
        x0 = cx + 6 if right else cx - 6 - w
        # Rows near the point, inside the plot: a label above the top is cut off.
        rows = [cy + 4 + dy for dy in (0, 12, -12, 24, -24, 36, -36)]
        inside = [r for r in rows if 12 <= r <= py1 - 2] or rows[:1]
        ly = _free_row(placed, x0, x0 + w, inside, 11)
        state = state_of.get(name, "unknown")
        tip = _esc(f"{name} · score {score:.3f} · ${price:,.4g} per Mtok · {state}")
        colour = STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
        at = f'cx="{_n(cx)}" cy="{_n(cy)}" r="4" fill="{colour}"'
        body.append(f'<circle class="point" {at}><title>{tip}</title></circle>')
        if abs(ly - (cy + 4)) > 1:
            # Moved off its point's row: a leader line says whose label it is.
            end = x0 if right else x0 + w
            body.append(_line(cx, cy, end, ly - 4, ' stroke="#8c959f" stroke-width="0.8"'))
        body.append(_text(x0, ly, name, ' font-size="10"', limit=LABEL_LIMIT))
    legend = _state_swatches({state_of.get(n, "unknown") for n, *_ in shown})
    body += _legend(legend, 4, py1 + 50, width)
    if skipped:
        note = "not shown (no score or price): " + ", ".join(skipped)
        attrs = ' class="note" font-size="10" fill="#555"'
        body.append(_text(4, height - 6, note, attrs, limit=int(width / 5.5)))
    return _svg(width, height, label, body)


def _event_marker(kind: str, x: float, y: float, tip: str, cls: str = ' class="event"') -> str:
    shape, colour, _ = EVENT_STYLES.get(kind, OTHER_EVENT)
    return f'<path{cls} fill="{colour}" d="M{_n(x)} {_n(y - 5)}{shape}">{tip}</path>'


def timeline(
    events: Sequence[TimelineEvent], *, start: datetime, end: datetime, width: int = 640
) -> str:
    """The window's incidents and policy changes on one time axis, labels kept apart.

    Each event is placed in the first row where its label does not overlap another
    (greedy, in time order), up to ``MAX_LANES`` rows. Events outside [start, end] are
    skipped, and a note under the axis says how many.

    Args:
        events: The events, in any order; times must be timezone-aware.
        start: Left end of the axis.
        end: Right end of the axis, after ``start``.
        width: Width in pixels; the height follows from the number of rows.

    Returns:
        An ``<svg>`` element; a small one saying "no incidents or policy changes this week"
        when no event falls in the window.

    Raises:
        ValueError: A time is naive, or ``end`` is not after ``start``.
    """
    if _aware(end) <= _aware(start):
        raise ValueError(f"timeline end {end.isoformat()} is not after start {start.isoformat()}")
    # ``end`` is exclusive (midnight after the last day): name the last day itself.
    last = end - timedelta(microseconds=1)
    label = f"Incidents and policy changes, {start:%Y-%m-%d} to {last:%Y-%m-%d}"
    inside = sorted((e for e in events if start <= _aware(e.at) <= end), key=lambda e: e.at)
    skipped = len(events) - len(inside)
    note = f"{skipped} event{'s' if skipped != 1 else ''} outside the window not shown"
    if not inside:
        extra = f" ({note})" if skipped else ""
        return _message(label, f"no incidents or policy changes this week{extra}", width)
    px0, px1 = 20.0, width - 20.0
    fx = _scale(start.timestamp(), end.timestamp(), px0, px1)
    rows = [10 + (k + 0.5) * _LANE_H for k in range(MAX_LANES)]
    placed: list[_Box] = []
    for e in inside:
        x = fx(e.at.timestamp())
        w = 14 + len(_clean(e.label, LABEL_LIMIT)) * _CHAR_W
        box = (x - 6, x + w) if x + w <= width - 2 else (x - w, x + 6)
        _free_row(placed, *box, rows, _LANE_H / 2)
    axis_y = max(y for _, _, y in placed) + _LANE_H / 2 + 4
    height = axis_y + 42 + (14 if skipped else 0)
    body = [_line(px0, axis_y, px1, axis_y, ' stroke="#999"')]
    for day in _day_ticks(start, end, max(2, int((px1 - px0) / 70))):
        body += _x_tick(fx(day.timestamp()), axis_y, f"{_MONTHS[day.month - 1]} {day.day}")
    for e, (x0, x1, y) in zip(inside, placed, strict=True):
        x = fx(e.at.timestamp())
        body.append(_line(x, y, x, axis_y, ' stroke="#ddd"'))
        tip = _esc(f"{e.at:%Y-%m-%d %H:%M} · {e.kind} · {e.label}")
        body.append(_event_marker(e.kind, x, y, f"<title>{tip}</title>"))
        anchor = (x0 + 14, "") if x0 > x - 7 else (x1 - 14, ' text-anchor="end"')
        body.append(_text(anchor[0], y + 4, e.label, anchor[1], limit=LABEL_LIMIT))
    kinds = {e.kind for e in inside}
    keys = [k for k in EVENT_STYLES if k in kinds] + ["other"] * bool(kinds - EVENT_STYLES.keys())
    legend = [(_event_marker(k, 5, -4, "", ""), EVENT_STYLES.get(k, OTHER_EVENT)[2]) for k in keys]
    body += _legend(legend, 4, axis_y + 34, width)
    if skipped:
        body.append(_text(4, height - 6, note, ' class="note" font-size="10" fill="#555"'))
    return _svg(width, height, label, body)
