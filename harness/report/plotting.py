"""Shared matplotlib plumbing for the PNGs the CLI writes: a headless backend and one atomic way to save a figure."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a plot is asked for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG to `path` atomically (a crash never leaves a half-written image where a good one was;
    parent folders created) and release it."""
    import io

    from harness.toml_io import write_atomic

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        pyplot().close(fig)
    return write_atomic(Path(path), buffer.getvalue())
