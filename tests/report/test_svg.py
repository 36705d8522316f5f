"""The report's SVG charts: well-formed, self-contained, escaped, and faithful to the data."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routewatch.report.svg import (
    STATE_COLOURS,
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

NS = "{http://www.w3.org/2000/svg}"
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
HOSTILE = [
    "<script>alert(1)</script>",
    "</svg><img src=x onerror=alert(1)>",
    "&amp; &lt;",
    "\" onload='alert(1)' x=\"",
]
STATES = ["healthy", "degraded", "unknown", "judge_suspect", "failed"]


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.get("class") == cls]


def texts(root: ET.Element, cls: str | None = None) -> list[str]:
    return [el.text or "" for el in root.iter(f"{NS}text") if cls is None or el.get("class") == cls]


def all_text(root: ET.Element) -> str:
    return " ".join(el.text or "" for el in root.iter())


def check_self_contained(svg: str) -> ET.Element:
    """Parse ``svg`` and fail on anything that could run or fetch when inlined in a page."""
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox")
    for el in root.iter():
        assert el.tag.startswith(NS), el.tag
        assert el.tag.removeprefix(NS) not in {"script", "foreignObject", "image", "use", "a"}
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on"), name
            assert "href" not in name.lower()
            assert "url(" not in value
            assert "http" not in value
    assert "<script" not in svg.lower()
    assert "<img" not in svg.lower()
    return root


def daily(scores: list[float | None], **fields: Any) -> list[ScorePoint]:
    return [
        ScorePoint(at=MONDAY + timedelta(days=i, hours=6), score=s, **fields)
        for i, s in enumerate(scores)
    ]


def sample_charts() -> list[str]:
    week = daily([0.8, None, 0.75], mean=0.8, sd=0.02, lower_limit=0.76)
    prices = [CostQualityPoint(label="a", score=0.8, usd_per_mtok=0.5)]
    events = [TimelineEvent(at=MONDAY + timedelta(days=1), kind="incident.opened", label="x")]
    return [
        score_chart(week, title="t"),
        cost_quality_chart(prices),
        timeline(events, start=MONDAY, end=MONDAY + timedelta(days=7)),
        lines_chart(
            [line([0.5, None, 0.7])], labels=WEEKS, title="t", legend=[("c", "#000", False)]
        ),
    ]


WEEKS = ["2026-W45", "2026-W46", "2026-W47"]


def line(values: list[float | None], label: str = "c kappa", dashed: bool = False) -> LineSeries:
    return LineSeries(label=label, values=tuple(values), colour="#2c7bb6", dashed=dashed)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_is_escaped_in_every_chart(hostile: str) -> None:
    points = [*daily([0.8]), ScorePoint(at=MONDAY, score=0.7, state=hostile)]
    costs = [
        CostQualityPoint(label=hostile, score=0.8, usd_per_mtok=1.0),
        CostQualityPoint(label=hostile, score=None, usd_per_mtok=1.0),
    ]
    events = [TimelineEvent(at=MONDAY + timedelta(hours=5), kind=hostile, label=hostile)]
    charts = [
        score_chart(points, title=hostile),
        cost_quality_chart(costs),
        timeline(events, start=MONDAY, end=MONDAY + timedelta(days=7)),
        lines_chart(
            [line([0.1, 0.2], label=hostile)],
            labels=[hostile, "w"],
            title=hostile,
            legend=[(hostile, "#000", False)],
        ),
    ]

    for svg in charts:
        assert hostile in all_text(check_self_contained(svg))
        assert hostile not in svg


@pytest.mark.parametrize("svg", sample_charts(), ids=["score", "cost", "timeline", "lines"])
def test_charts_reference_nothing_outside_themselves(svg: str) -> None:
    root = check_self_contained(svg)

    assert root.get("font-family") == "sans-serif"
    assert root.get("aria-label")


def test_lines_chart_breaks_a_line_where_a_value_is_missing() -> None:
    root = check_self_contained(
        lines_chart(
            [line([0.5, 0.6, None, 0.7]), line([None] * 4)], labels=[*WEEKS, "x"], title="t"
        )
    )

    (path,) = by_class(root, "series")
    assert path.get("d", "").count("M") == 2
    tips = [t.text for p in by_class(root, "point") for t in p.iter(f"{NS}title")]
    assert tips == ["c kappa · 2026-W45 · 0.50", "c kappa · 2026-W46 · 0.60", "c kappa · x · 0.70"]


def test_lines_chart_dashes_a_dashed_series_and_its_legend() -> None:
    root = check_self_contained(
        lines_chart(
            [line([0.5, 0.6, 0.7], dashed=True)],
            labels=WEEKS,
            title="t",
            legend=[("rho", "#555", True)],
        )
    )

    dashed = [el for el in root.iter(f"{NS}path") if el.get("stroke-dasharray")]
    assert len(dashed) == 2
    assert "rho" in texts(root)


def test_lines_chart_without_values_says_so() -> None:
    svg = lines_chart([line([None, None, None])], labels=WEEKS, title="t")

    assert "no values" in all_text(check_self_contained(svg))


def test_score_chart_draws_one_marker_per_run_with_a_tooltip() -> None:
    points = daily([0.9, 0.8, None, 0.7, 0.85], state="degraded")

    markers = by_class(ET.fromstring(score_chart(points, title="r")), "marker")

    assert len(markers) == 5
    assert all(m.find(f"{NS}title") is not None for m in markers)
    assert {m.get("fill") or m.get("stroke") for m in markers} == {"#d7191c"}


def test_marker_tooltip_gives_time_score_and_state() -> None:
    point = ScorePoint(at=MONDAY + timedelta(hours=6), score=0.8124, state="degraded")

    (marker,) = by_class(ET.fromstring(score_chart([point], title="r")), "marker")

    assert marker.findtext(f"{NS}title") == "2026-11-23 06:00 · score 0.812 · degraded"


def test_band_follows_the_means_and_is_absent_without_them() -> None:
    with_means = daily([0.8, 0.82], mean=0.8, sd=0.05)
    learning = daily([0.8, 0.82])

    assert len(by_class(ET.fromstring(score_chart(with_means, title="r")), "band")) == 1
    assert by_class(ET.fromstring(score_chart(learning, title="r")), "band") == []


def test_band_breaks_where_the_baseline_was_relearned() -> None:
    points = [*daily([0.8, 0.8], mean=0.8, sd=0.02)]
    points += [ScorePoint(at=MONDAY + timedelta(days=2), score=0.8)]
    points += [ScorePoint(at=MONDAY + timedelta(days=3), score=0.8, mean=0.8)]

    assert len(by_class(ET.fromstring(score_chart(points, title="r")), "band")) == 2


def test_threshold_line_is_drawn_only_with_lower_limits() -> None:
    limited = daily([0.8, 0.9], lower_limit=0.7)
    unlimited = daily([0.8, 0.9])

    (line,) = by_class(ET.fromstring(score_chart(limited, title="r")), "threshold")
    assert line.get("stroke-dasharray")
    assert by_class(ET.fromstring(score_chart(unlimited, title="r")), "threshold") == []


def test_missing_score_breaks_the_line_and_gets_a_cross_at_the_bottom() -> None:
    points = daily([0.8, 0.9, None, 0.7, 0.75])
    points[2] = ScorePoint(at=points[2].at, score=None, state="failed")

    root = ET.fromstring(score_chart(points, title="r"))

    (line,) = by_class(root, "score-line")
    assert (line.get("d") or "").count("M") == 2
    cross = by_class(root, "marker")[2]
    assert cross.tag == f"{NS}path"
    assert cross.get("stroke") == "#000000"
    assert "no score · failed" in (cross.findtext(f"{NS}title") or "")


@pytest.mark.parametrize(
    "points",
    [daily([0.8], mean=0.8, sd=0.0, lower_limit=0.8), daily([0.5] * 6, mean=0.5, sd=0.0)],
    ids=["single", "flat"],
)
def test_single_and_flat_runs_render_finite_markup(points: list[ScorePoint]) -> None:
    svg = score_chart(points, title="r")

    markers = by_class(check_self_contained(svg), "marker")
    assert len(markers) == len(points)
    assert len({m.get("cy") for m in markers}) == 1
    assert not re.search(r"nan|inf", svg)


def test_narrow_scores_zoom_the_y_axis_and_keep_the_threshold_in_view() -> None:
    points = daily([0.90, 0.92, 0.91], lower_limit=0.85)

    root = ET.fromstring(score_chart(points, title="r"))

    ticks = [float(t) for t in texts(root) if re.fullmatch(r"[0-9.]+", t)]
    assert 0 < min(ticks) <= 0.85
    assert max(ticks) < 1


def test_date_ticks_read_like_nov_23() -> None:
    root = ET.fromstring(score_chart(daily([0.8] * 7), title="r"))

    assert texts(root, "xtick")[:3] == ["Nov 24", "Nov 25", "Nov 26"]


def test_runs_before_the_report_week_are_lighter() -> None:
    points = [*daily([0.8, 0.8], in_week=False)]
    points += [ScorePoint(at=MONDAY + timedelta(days=7), score=0.8)]

    root = ET.fromstring(score_chart(points, title="r"))

    assert [m.get("opacity") for m in by_class(root, "marker")] == [".45", ".45", None]
    assert len(by_class(root, "week")) == 1


def test_empty_inputs_say_so() -> None:
    end = MONDAY + timedelta(days=7)

    assert "no runs" in all_text(check_self_contained(score_chart([], title="r")))
    assert "no data" in all_text(check_self_contained(cost_quality_chart([])))
    message = all_text(check_self_contained(timeline([], start=MONDAY, end=end)))
    assert "no incidents or policy changes this week" in message


def test_cost_chart_uses_a_log_axis_for_prices_spanning_more_than_10x() -> None:
    points = [CostQualityPoint(label=str(p), score=0.8, usd_per_mtok=p) for p in (0.15, 3, 60)]

    root = ET.fromstring(cost_quality_chart(points))

    assert texts(root, "xtick") == ["$0.1", "$1", "$10", "$100"]
    assert "log scale" in all_text(root)


def test_cost_chart_labels_stay_inside_and_a_moved_label_has_a_leader_line() -> None:
    """The demo's week: four points at a score of 1.0, two of them near the right edge.
    A label pushed off its point's row (or to its left) is tied to it by a line, and no
    label rises above the chart, where it was cut off."""
    names = ["pro · refund", "pro · faq", "premium · faq", "premium · refund"]
    prices = [1.99, 2.23, 6.18, 5.51]
    points = [
        CostQualityPoint(label=n, score=1.0, usd_per_mtok=p)
        for n, p in zip(names, prices, strict=True)
    ]
    points.append(CostQualityPoint(label="flash", score=0.62, usd_per_mtok=0.6))

    root = ET.fromstring(cost_quality_chart(points))

    labels = {el.text: el for el in root.iter(f"{NS}text") if el.text in [*names, "flash"]}
    assert set(labels) == {*names, "flash"}
    assert all(float(el.get("y", "0")) >= 12 for el in labels.values())
    circles = {
        (round(float(c.get("cx", "0")), 1), round(float(c.get("cy", "0")), 1))
        for c in root.iter(f"{NS}circle")
    }
    starts = {
        (round(float(ln.get("x1", "0")), 1), round(float(ln.get("y1", "0")), 1))
        for ln in root.iter(f"{NS}line")
        if ln.get("stroke") == "#8c959f"
    }
    # Every leader starts at a point, and the crowded points at 1.0 needed some.
    assert starts
    assert starts <= circles


def test_cost_chart_colours_each_point_by_its_state_with_a_legend() -> None:
    points = [
        CostQualityPoint(label="flash", score=0.6, usd_per_mtok=0.6, state="degraded"),
        CostQualityPoint(label="pro", score=1.0, usd_per_mtok=2.0, state="healthy"),
        CostQualityPoint(label="new", score=0.9, usd_per_mtok=4.0),
    ]

    root = ET.fromstring(cost_quality_chart(points))

    fills = {
        c.findtext(f"{NS}title", "").split(" · ")[0]: c.get("fill")
        for c in root.iter(f"{NS}circle")
        if c.get("class") == "point"
    }
    assert fills == {
        "flash": STATE_COLOURS["degraded"],
        "pro": STATE_COLOURS["healthy"],
        "new": STATE_COLOURS["unknown"],
    }
    legend = [g.findtext(f"{NS}text") for g in root.iter(f"{NS}g")]
    assert legend == ["healthy", "degraded", "unknown"]


def test_cost_chart_uses_a_linear_axis_from_zero_for_close_prices() -> None:
    points = [CostQualityPoint(label=str(p), score=0.8, usd_per_mtok=p) for p in (1, 2.5, 4)]

    root = ET.fromstring(cost_quality_chart(points))

    assert texts(root, "xtick") == ["$0", "$1", "$2", "$3", "$4"]
    assert "$ per million tokens (blended)" in all_text(root)


def test_cost_chart_names_the_points_it_cannot_place() -> None:
    points = [
        CostQualityPoint(label="priced", score=0.8, usd_per_mtok=1.0),
        CostQualityPoint(label="unscored", score=None, usd_per_mtok=1.0),
        CostQualityPoint(label="unpriced", score=0.7, usd_per_mtok=None),
    ]

    root = ET.fromstring(cost_quality_chart(points))

    assert len(by_class(root, "point")) == 1
    assert texts(root, "note") == ["not shown (no score or price): unscored, unpriced"]


def test_long_labels_are_cut_but_the_tooltip_keeps_them_whole() -> None:
    label = "chat-flash · " + "x" * 100
    point = CostQualityPoint(label=label, score=0.8, usd_per_mtok=1.0)

    root = ET.fromstring(cost_quality_chart([point]))

    (shown,) = [t for t in texts(root) if t.startswith("chat-flash")]
    assert len(shown) == 40
    assert shown.endswith("…")
    assert by_class(root, "point")[0].findtext(f"{NS}title", "").startswith(label)


def test_timeline_puts_simultaneous_events_on_different_rows() -> None:
    at = MONDAY + timedelta(days=2)
    events = [
        TimelineEvent(at=at, kind="incident.opened", label="chat-flash degraded"),
        TimelineEvent(at=at, kind="policy.changed", label="fall back to chat-pro"),
    ]

    root = ET.fromstring(timeline(events, start=MONDAY, end=MONDAY + timedelta(days=7)))

    ys = [re.findall(r"[-\d.]+", el.get("d") or "")[1] for el in by_class(root, "event")]
    assert len(ys) == 2
    assert ys[0] != ys[1]


def test_timeline_gives_each_kind_its_own_marker() -> None:
    kinds = ["incident.opened", "incident.resolved", "policy.changed", "budget.exhausted"]
    events = [
        TimelineEvent(at=MONDAY + timedelta(days=i), kind=k, label=k) for i, k in enumerate(kinds)
    ]

    root = ET.fromstring(timeline(events, start=MONDAY, end=MONDAY + timedelta(days=7)))

    markers = by_class(root, "event")
    assert len({m.get("fill") for m in markers}) == 4
    assert len({re.sub(r"^M[-\d.]+ [-\d.]+", "", m.get("d") or "") for m in markers}) == 4
    assert markers[0].findtext(f"{NS}title") == (
        "2026-11-23 00:00 · incident.opened · incident.opened"
    )


def test_timeline_skips_events_outside_the_window_and_says_how_many() -> None:
    events = [
        TimelineEvent(at=MONDAY - timedelta(days=1), kind="incident.opened", label="before"),
        TimelineEvent(at=MONDAY + timedelta(days=1), kind="incident.resolved", label="inside"),
        TimelineEvent(at=MONDAY + timedelta(days=9), kind="policy.changed", label="after"),
    ]

    root = ET.fromstring(timeline(events, start=MONDAY, end=MONDAY + timedelta(days=7)))

    assert len(by_class(root, "event")) == 1
    assert texts(root, "note") == ["2 events outside the window not shown"]


def test_charts_are_deterministic() -> None:
    assert sample_charts() == sample_charts()


def test_a_year_of_daily_runs_stays_under_100_kb() -> None:
    scores = [None if i % 30 == 0 else 0.8 + (i % 7) / 100 for i in range(365)]
    points = [
        ScorePoint(
            at=MONDAY + timedelta(days=i, hours=6),
            score=s,
            mean=0.82,
            sd=0.02,
            lower_limit=0.78,
            state=STATES[i % 5],
            in_week=i >= 358,
        )
        for i, s in enumerate(scores)
    ]

    svg = score_chart(points, title="chat-flash · support-faq")

    assert len(svg.encode()) < 100_000
    assert len(by_class(check_self_contained(svg), "marker")) == 365


def test_naive_times_are_refused() -> None:
    naive = datetime(2026, 11, 23, 6)  # noqa: DTZ001

    with pytest.raises(ValueError, match="timezone-aware"):
        score_chart([ScorePoint(at=naive, score=0.8)], title="r")


# hypothesis takes naive bounds and attaches the zone itself
BOUNDS = (datetime(2020, 1, 1), datetime(2030, 1, 1))  # noqa: DTZ001
points_strategy = st.builds(
    ScorePoint,
    at=st.datetimes(*BOUNDS, timezones=st.just(UTC)),
    score=st.none() | st.floats(0, 1),
    mean=st.none() | st.floats(0, 1),
    sd=st.none() | st.floats(0, 0.5),
    lower_limit=st.none() | st.floats(0, 1),
    state=st.sampled_from(STATES) | st.text(max_size=12),
    in_week=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(points=st.lists(points_strategy, max_size=30), title=st.text(max_size=30))
def test_any_runs_give_well_formed_svg_with_one_marker_each(
    points: list[ScorePoint], title: str
) -> None:
    root = check_self_contained(score_chart(points, title=title))

    assert len(by_class(root, "marker")) == len(points)


def test_charts_shown_together_share_one_score_axis() -> None:
    """Alone, a chart of scores near 1 zooms in; beside a chart that falls to 0.2 it takes
    the same 0..1 axis, so the same score sits at the same height in both."""
    steady, falling = daily([0.97, 0.99, 1.0]), daily([1.0, 0.6, 0.2])

    def ticks(svg: str) -> list[str]:
        root = ET.fromstring(svg)
        return [el.text or "" for el in root.iter(f"{NS}text") if el.get("text-anchor") == "end"]

    domain = score_domain([steady, falling])

    assert domain == (0.0, 1.0)
    assert ticks(score_chart(steady, title="a")) != ticks(score_chart(falling, title="b"))
    assert ticks(score_chart(steady, title="a", domain=domain)) == ticks(
        score_chart(falling, title="b", domain=domain)
    )
