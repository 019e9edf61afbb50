"""PNG of a conditional-law fit: measured loss / L_opt against d/sqrt(N) and against r, with the fitted factors.
matplotlib is imported lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.report.plotting import pyplot, save_figure


def plot_conditional_fit(columns: dict, law, path: str | Path) -> Path:
    from matplotlib.ticker import NullFormatter

    plt = pyplot()

    N, D, d, r, loss = (columns[c] for c in ("N", "D", "d", "r", "loss"))
    lopt = law.lopt.predict(N, D)
    measured = loss / lopt if law.form == "multiplicative" else loss - lopt
    x = d / np.sqrt(N)
    fig, (ax_x, ax_r) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    label = "loss / L_opt" if law.form == "multiplicative" else "loss - L_opt"
    for ax, values, name, curve_of in (
        (ax_x, x, "d / sqrt(N)", lambda grid: law.architecture_factor(grid, np.median(r))),
        (ax_r, r, "r = MLP / attention params", lambda grid: law.architecture_factor(np.median(x), grid)),
    ):
        ax.scatter(values, measured, s=12, alpha=0.7, label="measured")
        grid = np.geomspace(values.min() * 0.8, values.max() * 1.25, 200)
        ax.plot(grid, curve_of(grid), "k-", label=f"fitted {law.form} law")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels collide on a narrow range
        ax.set_xlabel(name)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if law.x_opt is not None:
        ax_x.axvline(law.x_opt, color="tab:green", ls="--", label=f"x* = {law.x_opt:.3f}")
    if law.r_opt is not None:
        ax_r.axvline(law.r_opt, color="tab:green", ls="--", label=f"r* = {law.r_opt:.2f}")
    ax_x.legend(fontsize=8)
    ax_r.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
