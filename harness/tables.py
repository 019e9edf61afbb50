"""Plain-text tables and human-readable numbers for CLI output (SI units inside, humanized only here)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns right-aligned to their widest cell (the first column left-aligned), one header rule."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def humanize_count(value: float) -> str:
    """1.236e9 -> '1.24B', 6.1e7 -> '61.0M'."""
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return (
                f"{value / threshold:.3g}{suffix}"
                if abs(value) / threshold < 100
                else f"{value / threshold:.0f}{suffix}"
            )
    return f"{value:.0f}"


def humanize_bytes(value: float) -> str:
    """Binary units: 1.5 * 2**30 -> '1.50 GiB'."""
    for power, suffix in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(value) >= 1024**power:
            return f"{value / 1024**power:.2f} {suffix}"
    return f"{value:.0f} B"


def humanize_seconds(value: float) -> str:
    """0.0123 -> '12.3 ms'."""
    for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value * 1e9:.3g} ns"
