"""Cron expressions as people write them, turned into APScheduler 3 triggers.

APScheduler numbers weekdays from Monday (``0 3 * * 0`` fires on Monday), where
crontab numbers them from Sunday. ``parse_cron`` rewrites the day-of-week field
into day names so a schedule means what its author meant; config validation and
the daemon both build triggers here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * sun",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_PART = re.compile(r"^(?P<start>\*|\w+)(?:-(?P<end>\w+))?(?:/(?P<step>\d+))?$")


def parse_cron(expr: str, timezone: str = "UTC") -> CronTrigger:
    """Build a trigger from a 5-field crontab expression (or ``@daily`` and friends).

    Args:
        expr: ``minute hour day month day-of-week``; weekdays 0-7 (0 and 7 are
            Sunday) or names ``sun``..``sat``. A sixth, leading field sets seconds
            (``*/10 * * * * *``: every ten seconds), for tests and demos.
        timezone: IANA zone name the expression's times are in.

    Raises:
        ValueError: with a message that says what is wrong with the expression.
    """
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    second = "0"
    if len(fields) == 6:
        second, *fields = fields
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} needs 5 fields (minute hour day month day-of-week), or 6 with "
            f"seconds first; got {len(text.split())}"
        )
    minute, hour, day, month, dow = fields
    if day not in ("*", "?") and dow not in ("*", "?"):
        raise ValueError(
            f"cron {expr!r} restricts both day-of-month and day-of-week; crontab would run "
            "on either, which is rarely meant: restrict only one"
        )
    parts = {
        "second": second,
        "minute": minute,
        "hour": hour,
        "day": day.replace("?", "*"),
        "month": month,
    }
    try:
        parts["day_of_week"] = _weekday_names(dow.replace("?", "*"))
        return CronTrigger(**parts, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: {_which_field(parts, exc)}") from None


def _which_field(parts: dict[str, str], exc: ValueError) -> str:
    """APScheduler's complaint, said of the field it is about (it names only the value)."""
    for name, value in parts.items():
        try:
            CronTrigger(**{name: value}, timezone=UTC)  # no lookup of the local zone
        except ValueError as alone:
            reason = re.sub(r"^Error validating expression '[^']*': ", "", str(alone))
            reason = re.sub(
                r"the (?:last|first) value \((\d+)\) is (higher|lower) than the (maximum|minimum) "
                r"value \((\d+)\)",
                lambda m: (
                    f"{m[1]} is {'above' if m[2] == 'higher' else 'below'} its {m[3]}, {m[4]}"
                ),
                reason,
            )
            label = "day-of-month" if name == "day" else name.replace("_", "-")
            return f"{label} field {value!r}: {reason}"
    return str(exc)


def _weekday_names(field: str) -> str:
    """Rewrite a crontab day-of-week field (Sunday = 0 or 7) as APScheduler day names."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"day-of-week {part!r} is not a day, range or step")
        start, end, step = match["start"], match["end"], match["step"]
        if start == "*":
            if end is not None:
                raise ValueError(f"day-of-week {part!r}: '*' cannot start a range")
            first, last = 0, 6
        else:
            first = _day(start)
            last = _day(end) if end is not None else (6 if step else first)
        if last < first:
            raise ValueError(f"day-of-week range {part!r} runs backwards")
        days.update(d % 7 for d in range(first, last + 1, int(step or 1)))
    return ",".join(_NAMES[d] for d in sorted(days))


def _day(token: str) -> int:
    if token.isdigit():
        value = int(token)
        if value > 7:
            raise ValueError(f"day-of-week {value} is out of range 0-7 (0 and 7 are Sunday)")
        return value
    if token in _NAMES:
        return _NAMES.index(token)
    raise ValueError(f"day-of-week {token!r} is not a number 0-7 or a name sun..sat")


def last_fire_at_or_before(trigger: CronTrigger, moment: datetime) -> datetime | None:
    """The trigger's newest fire time at or before ``moment`` (aware), within 400 days."""
    for window in (timedelta(hours=2), timedelta(days=2), timedelta(days=35), timedelta(days=400)):
        start = moment - window
        last: datetime | None = None
        fire: datetime | None = trigger.get_next_fire_time(None, start)
        while fire is not None and fire <= moment:
            last = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        if last is not None:
            return last
    return None
