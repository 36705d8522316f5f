"""Slack Block Kit messages: one event body in, one incoming-webhook payload out.

Pure: ``slack_message`` renders an event (the webhook body of DESIGN.md) as a dict that stays
valid Block Kit whatever the event holds, escaping every string taken from it, since model
output is untrusted. The dispatcher renders each event here and posts it with ``slack.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from routewatch.visible import visible

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
FALLBACK_TEXT_LIMIT = 300
"""The top-level ``text`` is only the notification line; Slack allows far more."""
WORST_ITEMS_SHOWN = 3
LIST_LINES_SHOWN = 10

_BACKTICK_STANDIN = "\u02cb"
"""MODIFIER LETTER GRAVE ACCENT: reads as a backtick, but mrkdwn ignores it."""

_ALPHA_DETECTORS = frozenset({"paired-count", "paired-weighted", "paired-graded", "error-rate"})
"""Detectors whose ``threshold`` is a p-value budget rather than a value of the metric."""


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters, as Slack documents.

    This neutralises ``<!channel>``, ``<@U123>`` and ``<http://evil|click>`` links.

    Args:
        text: Any text, trusted or not.

    Returns:
        ``text`` with ``&``, ``<`` and ``>`` replaced by ``&amp;``, ``&lt;`` and ``&gt;``,
        and its control and bidi characters written as escapes (``visible``), so an
        output reads in Slack as the model wrote it.
    """
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def excerpt(text: str | None, limit: int = 200) -> str:
    """A short, single-line, escaped excerpt of untrusted text.

    Whitespace runs become one space and backticks a look-alike, so the text can neither
    stretch the message nor open a code block around the text that follows it.

    Args:
        text: The text, e.g. a model output; None gives an empty string.
        limit: The most characters kept before escaping, counting the closing ``…``.

    Returns:
        The excerpt, escaped with ``escape_mrkdwn``.
    """
    if not text:
        return ""
    flat = " ".join(text.split()).replace("`", _BACKTICK_STANDIN)
    if len(flat) > limit:
        flat = flat[: max(limit - 1, 0)].rstrip() + "…"
    return escape_mrkdwn(flat)


def slack_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """Render an event as an incoming-webhook payload.

    Every string taken from the event is escaped, and every Block Kit limit (50 blocks,
    3000-character texts, 10 fields of 2000, 150-character headers, 10 context elements)
    is enforced by cutting, so any event gives a payload Slack accepts.

    Args:
        event: An event body: ``event`` and ``id`` always, any other field possibly null.

    Returns:
        ``{"text": <escaped notification line>, "blocks": [...]}``.
    """
    build = _BUILDERS.get(str(event.get("event")), _generic)
    fallback, blocks = build(event)
    kept = [b for b in blocks if b is not None]
    if len(kept) > MAX_BLOCKS:
        left_out = len(kept) - MAX_BLOCKS + 1
        kept = [*kept[: MAX_BLOCKS - 1], _context([f"{left_out} more blocks left out."])]
    return {"text": _clip(fallback, FALLBACK_TEXT_LIMIT), "blocks": kept}


# -- Block Kit pieces: every string reaching them is already escaped ---------------------


def _clip(text: str, limit: int) -> str:
    """Cut escaped text to ``limit`` characters without splitting an ``&amp;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(len(cut) - 4, 0))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _mrkdwn(text: str, limit: int = MAX_TEXT) -> dict[str, Any]:
    # verbatim: Slack would otherwise turn bare URLs and #channel names into links.
    return {"type": "mrkdwn", "text": _clip(text, limit), "verbatim": True}


def _header(text: str) -> Block:
    plain = {"type": "plain_text", "text": _clip(text, MAX_HEADER_TEXT), "emoji": True}
    return {"type": "header", "text": plain}


def _section(text: str = "", fields: Iterable[str] = ()) -> Block | None:
    block: Block = {"type": "section"}
    if text:
        block["text"] = _mrkdwn(text)
    kept = [_mrkdwn(f, MAX_FIELD_TEXT) for f in fields if f][:MAX_FIELDS]
    if kept:
        block["fields"] = kept
    return block if len(block) > 1 else None


def _context(texts: Iterable[str]) -> Block:
    return {"type": "context", "elements": [_mrkdwn(t) for t in texts if t][:MAX_CONTEXT_ELEMENTS]}


def _divider() -> Block:
    return {"type": "divider"}


def _field(label: str, value: str | None) -> str:
    return f"*{label}*\n{value}" if value else ""


def _bullets(lines: list[str], empty: str) -> str:
    shown = lines[:LIST_LINES_SHOWN]
    more = [f"…and {len(lines) - len(shown)} more"] if len(lines) > len(shown) else []
    return "\n".join(f"• {line}" for line in [*shown, *more]) if shown else empty


def _footer(event: Mapping[str, Any]) -> Block:
    parts = ["routewatch", _e(event.get("at")), f"event {_e(event.get('id'))}"]
    return _context([" · ".join(p for p in parts if p)])


# -- reading and formatting event values ---------------------------------------------------


def _e(value: object, limit: int = 300) -> str:
    """An escaped value from the event; "" for null, cut at ``limit`` characters."""
    return "" if value is None else excerpt(str(value), limit)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mappings(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _metric_label(metric: object) -> str:
    name = str(metric) if metric else "unknown metric"
    if name.startswith("critical:"):
        return f"critical item {name.removeprefix('critical:')}"
    return name


def _g(value: object, missing: str) -> str:
    number = _num(value)
    return missing if number is None else f"{number:g}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.6f}".rstrip("0").rstrip(".")


def _in_units(metric: object, value: float | None) -> str | None:
    """A metric's value as people read it: a score 0.812, 1,240 ms, $0.0042, 12.5%."""
    if value is None:
        return None
    if metric == "p95_latency_ms":
        return f"{value:,.0f} ms"
    if metric == "cost_per_call_usd":
        return _usd(value)
    if metric == "error_rate":
        return f"{value:.1%}"
    return f"{value:.3f}"


def _p(value: float | None) -> str | None:
    return None if value is None else f"{value:.2g}"


def _threshold(event: Mapping[str, Any]) -> str | None:
    value, detector = _num(event.get("threshold")), event.get("detector")
    if value is None:
        return None
    if detector in _ALPHA_DETECTORS:
        return f"p ≤ {_p(value)}"
    if detector == "cusum":
        return f"CUSUM h = {value:.3g}"
    if detector == "critical-item":
        return f"{value:g} runs"
    return _in_units(event.get("metric"), value)


def _observed(event: Mapping[str, Any]) -> str | None:
    metric = event.get("metric")
    observed = _in_units(metric, _num(event.get("observed")))
    mean = _in_units(metric, _num(event.get("baseline_mean")))
    sd = _in_units(metric, _num(event.get("baseline_sd")))
    if mean is None:
        return observed
    return f"{observed or '—'} vs baseline {mean}" + (f" ± {sd}" if sd else "")


def _hours(value: float | None) -> str:
    if value is None:
        return "an unknown time"
    return "1 hour" if round(value) == 1 else f"{value:,.0f} hours"


# -- one builder per event kind: (fallback text, blocks) -------------------------------------

Built = tuple[str, list[Block | None]]


def _incident(event: Mapping[str, Any], *, reminder: bool) -> Built:
    route, metric = _e(event.get("route") or "a route"), _e(_metric_label(event.get("metric")))
    observed = _observed(event)
    if reminder:
        hours = _hours(_num(event.get("open_hours")))
        title = f":hourglass_flowing_sand: {route} still degraded: {metric}"
        lead, fallback = f"Still open after {hours}.", f"{route} still degraded after {hours}"
    else:
        title, lead = f":rotating_light: {route} degraded: {metric}", ""
        fallback = f"{route} degraded: {metric}"
    evidence = [
        _field("Route", route),
        _field("Eval set", _e(event.get("eval_set"))),
        _field("Metric", metric),
        _field("Observed", observed),
        _field("Threshold", _threshold(event)),
        _field("Detector", _e(event.get("detector"))),
        _field("p-value", _p(_num(event.get("p_value")))),
        _field("Run", _e(event.get("run_id"))),
        _field("Incident", f"#{incident}" if (incident := _e(event.get("incident_id"))) else ""),
    ]
    items = _mappings(event.get("worst_items"))[:WORST_ITEMS_SHOWN]
    blocks: list[Block | None] = [_header(title), _section(lead, evidence), _footer(event)]
    if items:
        blocks += [_divider(), *(_worst_item(n, item) for n, item in enumerate(items, 1))]
    blocks += [_divider(), _section(_policy_actions(event))]
    return fallback + (f" ({observed})" if observed else ""), blocks


def _worst_item(n: int, item: Mapping[str, Any]) -> Block | None:
    baseline, today = _num(item.get("baseline")), _num(item.get("today"))
    move = f"baseline {_in_units(None, baseline) or '—'} → today {_in_units(None, today) or '—'}"
    surprise = _num(item.get("surprise"))
    lines = [f"*{n}. {_e(item.get('item_id'), 100) or 'item'}*  {move}"]
    if surprise is not None:
        lines[0] += f" · surprise {surprise:.2g}"
    for label, key in (("Input", "input"), ("Reference", "reference"), ("Output", "output")):
        if text := excerpt(item.get(key) if isinstance(item.get(key), str) else None):
            lines.append(f"*{label}:* {text}")
    return _section("\n".join(lines))


def _policy_actions(event: Mapping[str, Any]) -> str:
    lines = [
        f"*{_e(a.get('policy'), 100) or 'policy'}* ({_e(a.get('mode'), 20) or '?'}): "
        + (_e(a.get("action")) or "no action")
        for a in _mappings(event.get("policy_actions"))
    ]
    return "*Fallback policy*\n" + _bullets(lines, "No fallback policy covers this route.")


def _resolved(event: Mapping[str, Any]) -> Built:
    route, metric = _e(event.get("route") or "a route"), _e(_metric_label(event.get("metric")))
    incident, run = _e(event.get("incident_id")), _e(event.get("run_id"))
    parts = [
        f"Incident #{incident} resolved" if incident else "Resolved",
        f"run {run}" if run else "",
        _observed(event) or "",
        _e(event.get("eval_set")),
        _e(event.get("at")),
    ]
    by = event.get("resolved_by")
    if by is not None and by != "routewatch":
        # Resolved by hand: no run showed it recovered, so say who closed it and why.
        parts[0] += f" by hand ({_e(by, 20)})"
        reason = _e(event.get("reason"))
        title = f":white_check_mark: {route}: {metric} incident resolved by hand"
        blocks = [_header(title), _section(f"*Reason:* {reason}" if reason else "")]
        blocks.append(_context([" · ".join(p for p in parts if p)]))
        return f"{route}: {metric} incident resolved by hand", blocks
    title = f":white_check_mark: {route} recovered: {metric}"
    context = _context([" · ".join(p for p in parts if p)])
    return f"{route} recovered: {metric}", [_header(title), context]


def _policy_changed(event: Mapping[str, Any]) -> Built:
    policy = _e(event.get("policy"), 100) or "fallback"

    def chain(key: str) -> str:
        names = event.get(key)
        return " → ".join(_e(r, 100) for r in names) if isinstance(names, list) else ""

    if event.get("all_degraded") is True:
        title = f":rotating_light: Every route in policy {policy} is degraded"
    elif event.get("chain") == event.get("previous_chain"):
        # Only the demotions or the pins changed (a pin of the chain in force, say).
        title = f":twisted_rightwards_arrows: Policy {policy} kept its active chain"
    else:
        title = f":twisted_rightwards_arrows: Policy {policy} changed its active chain"
    demoted = [
        f"{_e(d.get('route'), 100)} since {_e(d.get('since')) or '?'}: {_e(d.get('reason'))}"
        + (f" (incident #{_e(d.get('incident_id'))})" if d.get("incident_id") else "")
        for d in _mappings(event.get("demoted"))
    ]
    lines = [f"*Active chain:* {chain('chain') or '—'}", f"*Was:* {chain('previous_chain') or '—'}"]
    fields = [
        _field("Version", _e(event.get("version"))),
        _field("Actor", _e(event.get("actor"))),
        _field("Reason", _e(event.get("reason"))),
        _field("Incident", _e(event.get("incident_id"))),
    ]
    blocks = [_header(title), _section("\n".join(lines), fields)]
    if demoted:
        blocks.append(_section("*Demoted*\n" + _bullets(demoted, "")))
    return title.split(" ", 1)[1], [*blocks, _footer(event)]


def _judge_drift(event: Mapping[str, Any]) -> Built:
    judge = _e(event.get("judge"), 100) or "the judge"
    canaries = _mappings(event.get("canaries"))
    lines = [
        f"{_e(c.get('criterion'), 200) or 'canary'}: expected {_g(c.get('expected'), '—')}, "
        f"got {_canary_verdict(c)}"
        for c in canaries
    ]
    run = _e(event.get("run_id"))
    answered = not canaries or any(_num(c.get("got")) is not None for c in canaries)
    lead = (
        f"Canary verdicts from {judge} moved"
        if answered
        else f"{judge} gave no verdict on any canary"
    ) + (f" on run {run}." if run else ".")
    title = f":scales: Judge drift: {judge}"
    blocks = [_header(title), _section(lead + "\n" + _bullets(lines, "No canaries listed."))]
    return f"Judge drift: {judge}", [*blocks, _footer(event)]


def _canary_verdict(canary: Mapping[str, Any]) -> str:
    """The grade the judge gave a canary, or that it gave none and why (``error``)."""
    got = _num(canary.get("got"))
    if got is not None:
        return f"{got:g}"
    error = _e(canary.get("error"), 150)
    return f"no verdict ({error})" if error else "no verdict"


def _judge_budget(event: Mapping[str, Any]) -> Built:
    judge = _e(event.get("judge"), 100) or "the judge"
    spent, budget = _num(event.get("spent_usd")), _num(event.get("budget_usd"))
    day = _e(event.get("day"), 40)
    spent_text = "?" if spent is None else _usd(spent)
    budget_text = "?" if budget is None else _usd(budget)
    text = f"{judge} spent {spent_text} of its {budget_text} daily budget" + (
        f" on {day}." if day else "."
    )
    title = f":money_with_wings: Judge budget spent: {judge}"
    return f"Judge budget spent: {judge}", [_header(title), _section(text), _footer(event)]


def _publish_failed(event: Mapping[str, Any]) -> Built:
    policy = _e(event.get("policy"), 100) or "fallback"
    fields = [
        _field("Publisher", _e(event.get("publisher"))),
        _field("Attempts", _e(event.get("attempts"))),
    ]
    error = _field("Error", _e(event.get("error"), 500))
    title = f":x: Policy {policy} was not published"
    blocks = [_header(title), _section(error, fields), _footer(event)]
    return f"Policy {policy} was not published", blocks


def _no_data(event: Mapping[str, Any]) -> Built:
    route = _e(event.get("route"), 100) or "a route"
    names = event.get("missing_eval_sets")
    missing = [_e(n, 100) for n in names] if isinstance(names, list) else []
    slot = _e(event.get("slot"), 40) or "?"
    grace = f"{_g(event.get('grace_hours'), '?')} h"
    if event.get("event") == "route.data_resumed":
        title = f":white_check_mark: Runs of {route} arrive again"
        text = f"A completed run of {route}'s slot {slot} arrived; it is no longer late."
        return f"Runs of {route} arrive again", [_header(title), _section(text), _footer(event)]
    sets = ", ".join(missing) or "its eval sets"
    title = f":hourglass: No data from {route}"
    text = (
        f"{route}'s slot {slot} has no completed run of {sets} {grace} after it. "
        "The daemon or its schedule may be stopped, or every call failing; "
        "its state is unknown until a run arrives."
    )
    return f"No data from {route}", [_header(title), _section(text), _footer(event)]


def _alert_test(event: Mapping[str, Any]) -> Built:
    title = ":white_check_mark: routewatch test alert"
    text = _e(event.get("message"), 300) or "A test of routewatch's alert delivery."
    return "routewatch test alert", [_header(title), _section(text), _footer(event)]


def _generic(event: Mapping[str, Any]) -> Built:
    kind = _e(event.get("event"), 100) or "event"
    scalars = [
        _field(_e(key, 100), _e(value))
        for key, value in event.items()
        if key != "event" and isinstance(value, str | int | float | bool) and value != ""
    ]
    others = [_e(k, 100) for k, v in event.items() if isinstance(v, Mapping | list)]
    chunks = [scalars[i : i + MAX_FIELDS] for i in range(0, len(scalars), MAX_FIELDS)]
    blocks: list[Block | None] = [_header(f":bell: routewatch: {kind}")]
    blocks += [_section(fields=chunk) for chunk in chunks]
    if others:
        blocks.append(_section("Also in the event, not shown: " + ", ".join(others)))
    return f"routewatch: {kind}", blocks


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Built]] = {
    "alert.test": _alert_test,
    "incident.opened": lambda event: _incident(event, reminder=False),
    "incident.reminder": lambda event: _incident(event, reminder=True),
    "incident.resolved": _resolved,
    "policy.changed": _policy_changed,
    "judge.drift": _judge_drift,
    "judge.budget": _judge_budget,
    "policy.publish_failed": _publish_failed,
    "route.no_data": _no_data,
    "route.data_resumed": _no_data,
}
