"""`archscale fit chinchilla|conditional|evaluate DATA.csv`: scaling-law fits from a CSV (see law/data_io.py
for the accepted column names)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.cli.args import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fit", help="fit scaling laws (Chinchilla, conditional) and check extrapolation")
    kinds = p.add_subparsers(dest="fit_kind", required=True, parser_class=type(p))
    chinchilla = kinds.add_parser("chinchilla", help="L = E + A/N^alpha + B/D^beta (Huber, L-BFGS, grid)")
    chinchilla.add_argument("data", type=Path)
    chinchilla.add_argument("--bootstrap", type=positive_int, default=None, help="bootstrap refits for 95%% CIs")
    chinchilla.add_argument("--json", action="store_true")
    chinchilla.set_defaults(run=run_chinchilla)
    for name, runner, help_text in (
        ("conditional", run_conditional, "the conditional law in d/sqrt(N) and r (Levenberg-Marquardt)"),
        ("evaluate", run_evaluate, "progressive extrapolation: fit on small sizes, predict the next"),
    ):
        sub = kinds.add_parser(name, help=help_text)
        sub.add_argument("data", type=Path)
        sub.add_argument("--form", choices=("multiplicative", "additive"), default="multiplicative")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(run=runner)
        if name == "conditional":
            sub.add_argument("--out", type=Path, help="save the fitted law as JSON (for `archscale search --law`)")
            sub.add_argument("--plot", type=Path, help="PNG of loss vs d/sqrt(N) and vs r with the fitted curves")


def emit(payload, text: str, as_json: bool) -> int:
    if as_json:
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)
    return 0


def run_chinchilla(args) -> int:
    from law.chinchilla import fit_chinchilla
    from law.data_io import CHINCHILLA_ALIASES, load_columns

    columns = load_columns(args.data, ("N", "D", "loss"), aliases=CHINCHILLA_ALIASES)
    fit = fit_chinchilla(columns["N"], columns["D"], columns["loss"], bootstrap=args.bootstrap or 0)
    return emit(fit.to_dict(), fit.report(), args.json)


def run_conditional(args) -> int:
    from law.chinchilla import fit_chinchilla
    from law.conditional import fit_conditional
    from law.data_io import load_columns
    from perfmodel.atomic_io import check_output_file

    for option, path in (("--out", args.out), ("--plot", args.plot)):  # before fitting: nothing half-written
        if path is not None:
            check_output_file(path, option)
    columns = load_columns(args.data, ("N", "D", "d", "r", "loss"))
    lopt = fit_chinchilla(columns["N"], columns["D"], columns["loss"], n_starts=10)
    fit = fit_conditional(*(columns[c] for c in ("N", "D", "d", "r", "loss")), form=args.form, lopt=lopt.law)
    text = f"L_opt(N, D) from a Chinchilla fit on the same data:\n{lopt.report()}\n\n{fit.report()}"
    if args.out is not None:
        fit.law.save(args.out)
        text += f"\nSaved the law to {args.out}"
    if args.plot is not None:
        from harness.report.fit_plot import plot_conditional_fit

        plot_conditional_fit(columns, fit.law, args.plot)
        text += f"\nWrote {args.plot}"
    return emit(fit.to_dict() | {"lopt": lopt.law.to_dict()}, text, args.json)


def format_steps(steps) -> str:
    """The progressive-extrapolation steps (law.evaluate.ExtrapolationStep) as a table."""
    import math

    from harness.tables import format_table

    def rho(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.2f}"

    body = [(f"<= {s.train_groups[-1]}", s.test_group, s.n_train, s.n_test, f"{s.mse:.2e}", f"{s.rmse:.4f}",
             rho(s.spearman), f"{rho(s.spearman_per_group)} ({s.n_spearman_groups})") for s in steps]  # fmt: skip
    header = ("fit on sizes", "predict", "train pts", "test pts", "MSE", "RMS", "Spearman all", "per (N, D) (groups)")
    return format_table(header, body)


def run_evaluate(args) -> int:
    from law.data_io import load_columns
    from law.evaluate import TOLERANCE_STEPS, extrapolation_rmse, progressive_extrapolation

    columns = load_columns(args.data, ("N", "D", "d", "r", "loss", "group"))
    steps = progressive_extrapolation(columns, form=args.form)
    rmse = extrapolation_rmse(steps)
    text = (
        f"Progressive extrapolation ({args.form} law, L_opt refitted on the training sizes):\n{format_steps(steps)}\n"
        "Spearman all: over every point of the held-out size (mostly the order of the token budgets). "
        "Per (N, D): mean over the token budgets with >= 3 architectures (the order of architectures, what the "
        "paper's Spearman compares).\n"
        f"RMS error over the held-out points of the last {min(TOLERANCE_STEPS, len(steps))} steps: {rmse:.4f}"
        + (" (with the multiplicative form on the shared morph_dataset.csv this is `archscale search`'s default "
           "--loss-tolerance for a law without a covariance)" if args.form == "multiplicative" else "")
    )  # fmt: skip
    payload = {"steps": [s.to_dict() for s in steps], "rmse_last_steps": rmse,
               "rmse_last_steps_count": min(TOLERANCE_STEPS, len(steps))}  # fmt: skip
    return emit(payload, text, args.json)
