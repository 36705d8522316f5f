from datetime import UTC, datetime

import pytest

from routewatch.cron import parse_cron

MONDAY = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def next_fire(expr: str) -> datetime:
    fire = parse_cron(expr, "UTC").get_next_fire_time(None, MONDAY)
    assert isinstance(fire, datetime)
    return fire


@pytest.mark.parametrize(
    ("expr", "weekday"),
    [
        ("0 3 * * 0", "Sunday"),
        ("0 3 * * 7", "Sunday"),
        ("0 3 * * sun", "Sunday"),
        ("0 3 * * 1", "Monday"),  # next week: Monday 03:00 has passed at noon
        ("0 13 * * 1", "Monday"),
        ("0 3 * * 6", "Saturday"),
        ("0 3 * * 0-0", "Sunday"),
        ("0 3 * * 5-7", "Friday"),
        ("0 13 * * MON", "Monday"),
    ],
)
def test_weekdays_follow_crontab_numbering(expr: str, weekday: str) -> None:
    assert next_fire(expr).strftime("%A") == weekday


def test_stepped_weekdays_count_from_sunday() -> None:
    trigger = parse_cron("0 0 * * */2", "UTC")

    assert "sun,tue,thu,sat" in str(trigger)


def test_macros_expand() -> None:
    assert next_fire("@daily") == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def test_times_are_in_the_given_zone() -> None:
    fire = parse_cron("0 6 * * *", "Europe/Berlin").get_next_fire_time(None, MONDAY)

    assert fire is not None
    assert fire.astimezone(UTC) == datetime(2026, 11, 24, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 6 * *", "needs 5 fields"),
        ("0 25 * * *", "'0 25 \\* \\* \\*'"),
        ("0 6 1 * mon", "restricts both day-of-month and day-of-week"),
        ("0 6 * * 8", "out of range 0-7"),
        ("0 6 * * 5-1", "runs backwards"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cron(expr)


def test_an_instant_without_offset_is_read_in_the_given_zone() -> None:
    from routewatch.clock import parse_instant

    assert parse_instant("2026-11-20T06:00", "Europe/Berlin") == datetime(
        2026, 11, 20, 5, 0, tzinfo=UTC
    )
    assert parse_instant("2026-11-20T06:00Z", "Europe/Berlin") == datetime(
        2026, 11, 20, 6, 0, tzinfo=UTC
    )


def test_a_sixth_leading_field_sets_seconds() -> None:
    trigger = parse_cron("*/10 * * * * *")
    start = datetime(2026, 11, 23, 6, 0, 1, tzinfo=UTC)

    first = trigger.get_next_fire_time(None, start)

    assert first == datetime(2026, 11, 23, 6, 0, 10, tzinfo=UTC)
    assert parse_cron("0 6 * * *").get_next_fire_time(None, start).second == 0


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("0 25 * * *", "hour field '25': 25 is above its maximum, 23"),
        ("0 6 0 * *", "day-of-month field '0': 0 is below its minimum, 1"),
        ("0 6 * 1-13 *", "month field '1-13': 13 is above its maximum, 12"),
        ("x 6 * * *", "minute field 'x': "),
    ],
)
def test_a_bad_field_is_named(expr: str, said: str) -> None:
    """APScheduler names only the value ("the last value (25) is higher than ...")."""
    with pytest.raises(ValueError, match=r"^cron ") as caught:
        parse_cron(expr)

    assert f"cron {expr!r}: {said}" in str(caught.value)
