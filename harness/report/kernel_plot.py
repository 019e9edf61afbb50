"""PNG of kernel benchmark rows: achieved bandwidth vs kv_len, one panel per (head_dim, batch size), one line per
implementation and group size, with the measured copy bandwidth as the ceiling. matplotlib imported lazily."""

from __future__ import annotations

from pathlib import Path

from harness.report.plotting import pyplot, save_figure

IMPL_COLOURS = {"triton": "tab:blue", "sdpa": "tab:orange", "flex": "tab:green"}
GROUP_STYLES = ("-", "--", ":", "-.")


def plot_kernel_bench(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    plt = pyplot()

    ok = [r for r in rows if r.get("status") == "ok"]
    head_dims = sorted({r["head_dim"] for r in ok})
    batch_sizes = sorted({r["batch_size"] for r in ok})
    groups = sorted({r["group"] for r in ok})
    fig, axes = plt.subplots(len(head_dims), len(batch_sizes), figsize=(3.2 * len(batch_sizes), 3 * len(head_dims)),
                             dpi=110, squeeze=False, sharey=True)  # fmt: skip
    for i, head_dim in enumerate(head_dims):
        for j, batch in enumerate(batch_sizes):
            ax = axes[i][j]
            panel = [r for r in ok if r["head_dim"] == head_dim and r["batch_size"] == batch]
            for impl, colour in IMPL_COLOURS.items():
                for group, style in zip(groups, GROUP_STYLES, strict=False):
                    line = sorted((r["kv_len"], r[f"{impl}_bytes_per_s"] / 1e9) for r in panel
                                  if r["group"] == group and f"{impl}_bytes_per_s" in r)  # fmt: skip
                    if line:
                        ax.plot(*zip(*line, strict=True), style, color=colour, marker=".", label=f"{impl} g{group}")
            if panel:
                ax.axhline(panel[0]["copy_bandwidth_bytes_per_s"] / 1e9, color="grey", lw=0.8, label="copy bw")
            ax.set_xscale("log", base=2)
            ax.set_title(f"head_dim {head_dim}, batch {batch}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == len(head_dims) - 1:
                ax.set_xlabel("kv_len")
            if j == 0:
                ax.set_ylabel("achieved GB/s")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 10), fontsize=7)
    fig.suptitle(f"GQA decode attention: {title}")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return save_figure(fig, path)
