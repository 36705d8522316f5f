"""Plain-text tables for terminal output."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned.

    A ``-`` (no value) in a column of numbers is right-aligned with them.
    """
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    numbers = {
        i
        for i in range(len(headers))
        if any(_numeric(r[i]) for r in rows)
        and all(_numeric(r[i]) or r[i] in ("-", "") for r in rows)
    }

    def line(cells: Sequence[str], *, header: bool = False) -> str:
        out = []
        for i, cell in enumerate(cells):
            right = _numeric(cell) or (not header and i in numbers)
            out.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, header=True), *(line(r) for r in rows)])


def _numeric(cell: str) -> bool:
    return cell[:1].isdigit() or (cell[:1] in "-$" and cell[1:2].isdigit())


def pct(value: float | None) -> str:
    """``0.8125`` -> ``81.2%``; ``-`` for none."""
    return "-" if value is None else f"{value * 100:.1f}%"


def num(value: float | None, unit: str = "", digits: int = 0) -> str:
    """A rounded number with a unit; ``-`` for none."""
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def usd(value: float | None) -> str:
    """Dollars with four decimals (eval runs cost cents)."""
    return "-" if value is None else f"${value:.4f}"
