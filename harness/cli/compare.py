"""`archscale compare`: the throughput model against measured sweep rows (errors, ranking, ratios to a baseline).

Every measured point is predicted again with the current model for the hardware entry given (--hardware or --gpu)
and the calibration (--calibration FILE, else the priors); held-out points are the configs (or batch sizes) the
calibration file records as left out of its fit. Prints a text report (or --json); --plot DIR writes three PNGs.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.args import add_drift_correct_arg

if TYPE_CHECKING:
    from harness.calibrate.compare import Comparison


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="measured vs predicted throughput of sweep files: errors, ranking",
                              description=__doc__)  # fmt: skip
    p.add_argument("sweeps", nargs="+", metavar="SWEEP.jsonl", help="sweep files of one machine and one engine")
    p.add_argument("--hardware", metavar="FILE.toml", default=None, help="hardware entry to predict for (probe file)")
    p.add_argument("--gpu", default=None, help="datasheet GPU to predict for (`local`: this machine's probe)")
    p.add_argument("--calibration", metavar="FILE.toml", default=None,
                   help="factors fitted by `archscale calibrate` (default: the uncalibrated priors)")  # fmt: skip
    p.add_argument("--baseline", metavar="CONFIG", default=None,
                   help="config the throughput ratios are taken to (default: the first config measured everywhere)")  # fmt: skip
    add_drift_correct_arg(p)
    p.add_argument("--json", action="store_true", help="print the whole comparison as JSON")
    p.add_argument("--plot", metavar="DIR", type=Path, default=None, help="write the three comparison PNGs into DIR")
    p.set_defaults(run=run)


def calibration_label(hardware, engine: str, calibration, calibration_file) -> str:
    state = "calibrated" if calibration.calibrated else "uncalibrated priors"
    if calibration_file is not None:
        return f"{calibration_file} [{hardware.name}.{engine}] ({state})"
    where = f"hardware entry {hardware.name}" if engine in hardware.calibration_priors else "perfmodel/data"
    return f"{state} ({where})"


def run(args) -> int:
    from harness.calibrate.compare import compare, fit_holdout
    from harness.sweep.rows import load_sweeps
    from perfmodel.atomic_io import check_output_dir
    from perfmodel.calibration import engine_priors, get_calibration
    from perfmodel.hardware import resolve_hardware

    hardware = resolve_hardware(args.gpu, args.hardware)
    if args.plot is not None:
        check_output_dir(args.plot, "--plot")  # before the report: a bad folder is one line, nothing printed
    data = load_sweeps(args.sweeps, drift_correct=args.drift_correct, probe_state=hardware.machine_reference)
    # Without a file: the engine's priors (not a fit the package adopted), so "uncalibrated" means what it says.
    calibration = (engine_priors(hardware, data.engine) if args.calibration is None
                   else get_calibration(hardware, data.engine, args.calibration))  # fmt: skip
    holdout = {} if args.calibration is None else fit_holdout(args.calibration, hardware.name, data.engine, data)
    comparison = compare(data, hardware, calibration, **holdout, baseline=args.baseline,
                         calibration_label=calibration_label(hardware, data.engine, calibration, args.calibration))  # fmt: skip
    if args.calibration is not None:
        comparison.warnings += _drift_mismatch(args.calibration, hardware.name, data.engine, args.drift_correct)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=2, allow_nan=False))
    else:
        print(format_report(comparison))
    if args.plot is not None:
        from harness.report.compare_plot import plot_comparison

        paths = plot_comparison(comparison, args.plot)
        print(f"Wrote {', '.join(str(p) for p in paths)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _drift_mismatch(calibration_file, hardware: str, engine: str, drift_correct: bool) -> list[str]:
    """A warning when the calibration was fitted on drift-corrected measurements and these are not, or the other way
    round: its factors then describe another machine state than the measurements compared."""
    from harness.calibrate.compare import calibration_record

    fitted_corrected = "drift_correction" in calibration_record(calibration_file, hardware, engine)
    if fitted_corrected == drift_correct:
        return []
    if fitted_corrected:
        return [f"{calibration_file} was fitted on drift-corrected measurements: compare with --drift-correct"]
    return [f"{calibration_file} was fitted on measurements as measured, these are drift-corrected"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _abs_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _share(right: int, total: int) -> str:
    return f"{right} of {total} ({100 * right / total:.0f}%)" if total else "n/a"


def format_report(c: Comparison) -> str:
    """The comparison as text: header, error summary, ranking, ratios to the baseline, per-point table."""
    from harness.calibrate.compare import METRICS, error_stats
    from harness.tables import format_table, humanize_seconds

    def sec(value):
        return "-" if value is None else humanize_seconds(value)

    files = ", ".join(f"{path} (sha256 {sha[:12]})" for path, sha in c.sweep_sha256.items())
    lines = [
        f"Measured on: {c.machine}, engine {c.engine}; {len(c.points)} points compared from {files}",
        f"Predicted for: hardware entry {c.hardware} ({c.hardware_display_name}), calibration {c.calibration_label}",
    ]
    splits = {"configs": ("config", c.holdout_configs), "batch sizes": ("batch_size", c.holdout_batch_sizes),
              "workloads (in/out)": ("workload", c.holdout_workloads)}  # fmt: skip
    split = next((what for what, (_, held) in splits.items() if held is not None), None)
    if split is None:
        lines.append("Held out: no split (the calibration records no fit); every point counts as "
                     f"{'calibrated' if c.calibrated else 'uncalibrated'}")  # fmt: skip
    else:
        what, key = split, splits[split][0]
        held = sorted({getattr(p, key) for p in c.points if p.split == "holdout"})
        trained = sorted({getattr(p, key) for p in c.points if p.split == "train"})
        lines.append(f"Held out of the fit ({what}): {', '.join(map(str, held)) or 'none of the compared points'}; "
                     f"trained on: {', '.join(map(str, trained)) or 'none'}")  # fmt: skip
    lines += [f"warning: {w}" for w in c.warnings]
    if c.excluded:
        lines.append(f"Excluded ({len(c.excluded)}):")
        lines += [f"  {e}" for e in c.excluded]
    names = dict(METRICS)
    body = [(names[s.metric], s.split, s.n_points, _abs_pct(s.median_abs_error_pct), _abs_pct(s.max_abs_error_pct),
             _pct(s.median_error_pct)) for s in c.summary if s.n_points or s.metric == "output_tokens_per_s"]  # fmt: skip
    if c.n_repeated_points:
        lines += ["", f"Measured more than once: {c.n_repeated_points} points (medians used); their measurements of "
                      f"output tok/s spread by median {c.median_measured_spread_pct:.1f}%, max "
                      f"{c.max_measured_spread_pct:.1f}% ((highest − lowest) / median): the floor under any model's "
                      "error"]  # fmt: skip
    if c.drift is not None:
        from harness.sweep.drift import format_drift

        lines.append(format_drift(c.drift))
    if c.drift_correction is not None:
        lines.append(f"Drift-corrected: {c.drift_correction.describe()}")
    lines += ["", "Error of the prediction, 100·(predicted/measured − 1):"]
    lines.append(format_table(("metric", "split", "points", "median |err|", "max |err|", "median err"), body))
    r = c.ranking
    spearman = "n/a (no workload with ≥ 3 configs)" if r.mean_spearman is None else (
        f"{r.mean_spearman:.3f} over {r.n_spearman_groups} workloads with ≥ 3 configs")  # fmt: skip
    lines += ["", "Ranking of configs by output tok/s at each (batch, in, out):",
              f"  order fully right: {_share(r.n_groups_right, r.n_groups)} workloads with ≥ 2 configs",
              f"  pairs ordered right: {_share(r.n_pairs_right, r.n_pairs)}",
              f"  mean Spearman: {spearman}"]  # fmt: skip
    if r.n_pairs_apart is not None:
        lines.append(f"  pairs whose repeated measurements do not overlap: {r.n_pairs_apart} of {r.n_pairs}, ordered "
                     f"right: {_share(r.n_pairs_apart_right, r.n_pairs_apart)}; every such pair right at "
                     f"{_share(r.n_groups_right_apart, r.n_groups_apart)} workloads that have one")  # fmt: skip
    if r.n_self_pairs is not None:
        lines.append(f"  one pass as the prediction, against the median of the other passes (the agreement the noise "
                     f"allows): pairs right {_share(r.n_self_pairs_right, r.n_self_pairs)}, whole order right "
                     f"{_share(r.n_self_orders_right, r.n_self_orders)} (pass × workload)")  # fmt: skip
    for g in r.groups:
        if not g.order_right:
            lines.append(f"  wrong at b={g.batch_size} in={g.input_len} out={g.output_len}: measured "
                         f"{' > '.join(g.measured_order)}; predicted {' > '.join(g.predicted_order)}")  # fmt: skip
    pairs = c.pairs
    lines += ["", f"Throughput ratio to the baseline {pairs.baseline} (config / baseline output tok/s), "
                  f"{pairs.n_ratios} ratios: median |ratio error| {_abs_pct(pairs.median_abs_ratio_error_pct)}, "
                  f"max {_abs_pct(pairs.max_abs_ratio_error_pct)}"]  # fmt: skip
    by_config = defaultdict(list)
    for x in pairs.ratios:
        by_config[x.config].append(x)
    if by_config:
        body = [(config, len(xs), f"{min(x.measured_ratio for x in xs):.2f}–{max(x.measured_ratio for x in xs):.2f}",
                 f"{min(x.predicted_ratio for x in xs):.2f}–{max(x.predicted_ratio for x in xs):.2f}",
                 *(_abs_pct(v) for v in error_stats([x.ratio_error_pct for x in xs])[:2]))
                for config, xs in sorted(by_config.items())]  # fmt: skip
        lines.append(format_table(("config", "points", "measured x", "predicted x", "median |err|", "max |err|"),
                                  body))  # fmt: skip
    if pairs.missing_baseline:
        lines.append(f"  no ratio (baseline not measured there): {'; '.join(pairs.missing_baseline)}")
    # Time columns only for what some point measured (rows that time only the whole run have none).
    timed = [(label, key) for label, key in (("TTFT", "ttft_s"), ("prefill", "prefill_time_s"), ("TPOT", "tpot_s"))
             if any(getattr(p, f"measured_{key}") is not None for p in c.points)]  # fmt: skip
    body = [(p.config, p.batch_size, p.input_len, p.output_len, *([p.split] if split else []),
             f"{p.measured_output_tokens_per_s:,.1f}", f"{p.predicted_output_tokens_per_s:,.1f}",
             _pct(p.output_tokens_per_s_error_pct),
             *([p.measurements, _abs_pct(p.measured_spread_pct)] if c.n_repeated_points else []),
             *(cell for _, key in timed for cell in (sec(getattr(p, f"measured_{key}")),
                                                    sec(getattr(p, f"predicted_{key}")),
                                                    _pct(getattr(p, f"{key}_error_pct")))))
            for p in c.points]  # fmt: skip
    header = ("config", "batch", "in", "out", *(["split"] if split else []), "out tok/s", "predicted", "err",
              *(["n", "spread"] if c.n_repeated_points else []), *(name for label, _ in timed for name in (label, "predicted", "err")))  # fmt: skip
    lines += ["", "Per point (measured, predicted now, error):", format_table(header, body)]
    return "\n".join(lines)
