"""PNGs of a `Comparison` (harness/calibrate/compare.py): predicted vs measured output tokens/s, output tokens/s vs batch size
per config, and each config's throughput ratio to the baseline vs batch size. matplotlib is imported lazily; every
file is written to a temporary name and moved into place, so a reader never sees half a PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.report.plotting import pyplot, save_figure

FILES = ("compare-predicted-vs-measured.png", "compare-throughput-vs-batch.png", "compare-ratio-vs-batch.png")


def _colours(configs):
    plt = pyplot()
    cycle = plt.get_cmap("tab10")
    return {config: cycle(i % 10) for i, config in enumerate(sorted(configs))}


def _panels(keys, plt, *, height=4.2):
    """One axes per (input_len, output_len), in a row (wrapping after 3)."""
    n = len(keys)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    width = 7.0 if cols == 1 else 5.0
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.4), dpi=120, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, dict(zip(keys, flat, strict=False))


def _title(comparison) -> str:
    return f"{comparison.engine} on {comparison.machine}\nmodel: {comparison.hardware}, {comparison.calibration_label}"


def plot_scatter(comparison, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    colours = _colours({p.config for p in comparison.points})
    markers = {"holdout": ("D", "held out"), "train": ("o", "trained on")}
    for config, colour in colours.items():
        for split in sorted({p.split for p in comparison.points if p.config == config}):
            chosen = [p for p in comparison.points if p.config == config and p.split == split]
            marker, word = markers.get(split, ("o", ""))
            ax.scatter([p.measured_output_tokens_per_s for p in chosen], [p.predicted_output_tokens_per_s for p in chosen],
                       color=colour, marker=marker, s=36 if marker == "o" else 46, edgecolor="black", linewidth=0.5,
                       label=f"{config} ({word})" if word else config, zorder=3)  # fmt: skip
    values = [v for p in comparison.points for v in (p.measured_output_tokens_per_s, p.predicted_output_tokens_per_s)]
    low, high = min(values) / 1.3, max(values) * 1.3
    line = [low, high]
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.fill_between(line, [v * 0.9 for v in line], [v * 1.1 for v in line], color="grey", alpha=0.2, label="±10%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("measured output tokens/s")
    ax.set_ylabel("predicted output tokens/s")
    ax.set_title("predicted vs measured: " + _title(comparison), fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def _by_lengths(items):
    groups = defaultdict(list)
    for item in items:
        groups[(item.input_len, item.output_len)].append(item)
    return dict(sorted(groups.items()))


def _curves(ax, items, colours, measured_key: str, predicted_key: str) -> None:
    by_config = defaultdict(list)
    for item in items:
        by_config[item.config].append(item)
    for config, xs in sorted(by_config.items()):
        xs.sort(key=lambda x: x.batch_size)
        batches = [x.batch_size for x in xs]
        ax.plot(batches, [getattr(x, predicted_key) for x in xs], "-", color=colours[config], lw=1.2)
        ax.scatter(batches, [getattr(x, measured_key) for x in xs], color=colours[config], s=22, zorder=3,
                   label=config)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.grid(alpha=0.3, which="both")


def plot_throughput(comparison, path: Path) -> Path:
    plt = pyplot()
    groups = _by_lengths(comparison.points)
    colours = _colours({p.config for p in comparison.points})
    fig, axes = _panels(list(groups), plt)
    for (input_len, output_len), ax in axes.items():
        _curves(ax, groups[(input_len, output_len)], colours, "measured_output_tokens_per_s",
                "predicted_output_tokens_per_s")  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylabel("output tokens/s")
        ax.set_title(f"in={input_len} out={output_len} (dots measured, lines predicted)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("output tokens/s vs batch size: " + _title(comparison), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ratios(comparison, path: Path) -> Path:
    plt = pyplot()
    pairs = comparison.pairs
    groups = _by_lengths(pairs.ratios) or {(p.input_len, p.output_len): [] for p in comparison.points[:1]}
    colours = _colours({p.config for p in comparison.points})
    fig, axes = _panels(list(groups), plt)
    for (input_len, output_len), ax in axes.items():
        _curves(ax, groups[(input_len, output_len)], colours, "measured_ratio", "predicted_ratio")
        ax.axhline(1.0, color=colours.get(pairs.baseline, "black"), ls="--", lw=1, label=f"{pairs.baseline} (baseline)")
        ax.set_ylabel(f"output tok/s / {pairs.baseline}'s")
        ax.set_title(f"in={input_len} out={output_len} (dots measured, lines predicted)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"throughput ratio to {pairs.baseline}: " + _title(comparison), fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_comparison(comparison, out_dir: str | Path) -> list[Path]:
    """The three PNGs (FILES) in `out_dir`, created if needed."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        from perfmodel.errors import ArchscaleInputError

        raise ArchscaleInputError(f"--plot {out_dir} is a file, not a folder")
    scatter, throughput, ratios = (out_dir / name for name in FILES)
    return [plot_scatter(comparison, scatter), plot_throughput(comparison, throughput), plot_ratios(comparison, ratios)]
