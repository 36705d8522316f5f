"""The plain-text tables of the CLI."""

from routewatch.cli.table import format_table


def test_numbers_and_their_missing_values_are_right_aligned_text_left() -> None:
    table = format_table(
        ["route", "p50", "cost"],
        [["a", "1,234 ms", "$0.0012"], ["bb", "-", "$0.1000"], ["c", "7 ms", "-"]],
    )

    assert table.splitlines() == [
        "route  p50       cost",
        "a      1,234 ms  $0.0012",
        "bb            -  $0.1000",
        "c          7 ms        -",
    ]


def test_a_column_of_text_with_dashes_stays_left_aligned() -> None:
    table = format_table(["route", "judge"], [["a", "default"], ["b", "-"]])

    assert table.splitlines() == ["route  judge", "a      default", "b      -"]
