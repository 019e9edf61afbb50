"""PNG of a search: every candidate (predicted loss vs predicted output tokens/s, coloured by GQA group), the
Pareto frontier, the loss target, the band of losses that tie with the minimum (within the search's tolerance), and
the baseline, Panda and Surefire (and, GQA opened, the GQA-searched Surefire) marked. matplotlib is imported
lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.report.plotting import pyplot, save_figure


def plot_search(result, path: str | Path, *, title: str = "") -> Path:
    plt = pyplot()

    candidates = result.candidates
    loss, tokens_per_s = candidates.predicted_loss, candidates.output_tokens_per_s
    groups = candidates.gqa_group
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=130)
    for group in np.unique(groups):
        chosen = (groups == group) & candidates.feasible
        ax.scatter(tokens_per_s[chosen], loss[chosen], s=4, alpha=0.35, label=f"GQA {group}", rasterized=True)
    front = result.frontier_indices
    ax.plot(tokens_per_s[front], loss[front], "k-", lw=1.2, label="Pareto frontier")
    ax.axhline(result.loss_target, color="grey", ls="--", lw=0.8, label=f"loss target {result.loss_target:.4f}")
    ax.axhspan(result.min_loss, result.min_loss + result.loss_tolerance, color="tab:green", alpha=0.08,
               label=f"ties: loss <= min + {result.loss_tolerance:.4f}")  # fmt: skip
    marks = (
        ("baseline", result.baseline_tokens_per_s, result.baseline_loss, "s", "tab:red"),
        ("Panda", tokens_per_s[result.panda_index], loss[result.panda_index], "*", "tab:green"),
        ("Surefire", tokens_per_s[result.surefire_index], loss[result.surefire_index], "D", "tab:purple"),
    )
    if result.surefire_gqa_index is not None:
        i = result.surefire_gqa_index
        marks += (("Surefire, GQA searched (GQA's loss not modelled)", tokens_per_s[i], loss[i], "P", "tab:orange"),)
    for label, x, y, marker, colour in marks:
        ax.scatter([x], [y], s=120, marker=marker, color=colour, edgecolor="black", zorder=5, label=label)
    ax.set_xlabel("predicted output tokens/s")
    ax.set_ylabel("predicted loss")
    # Zoom on the interesting part: losses up to a little above the target.
    finite = np.isfinite(loss) & candidates.feasible
    spread = max(result.loss_target - float(np.min(loss[finite])), result.loss_tolerance, 1e-3)
    ax.set_ylim(float(np.min(loss[finite])) - 0.2 * spread, result.loss_target + 3 * spread)
    ax.set_title(title or "archscale search")
    ax.legend(fontsize=7, markerscale=1.0, loc="upper left", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
