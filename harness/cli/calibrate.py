"""`archscale calibrate`: fit the perfmodel's efficiency factors to measured sweeps and write a calibration TOML.

The [<hardware>.<engine>] table it writes (calibrated = true, with the fit's standard errors, split, point count,
the sweep files' SHA-256 and the run metadata) is used by `predict`, `search`, `sweep` and `compare` through
`--calibration FILE`. An existing file keeps its other tables; the file is replaced atomically. `format_report`
renders the fit as text, as `harness.cli.compare.format_report` does a comparison.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.args import add_drift_correct_arg, positive_int_list

if TYPE_CHECKING:
    from harness.calibrate.fit import CalibrationFit
    from harness.sweep.rows import SweepData
    from perfmodel.hardware import Hardware


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        import argparse

        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got '{text}'")
    return names


def _workloads(text: str) -> list[str]:
    """'4096/1024,512/512' -> ['4096/1024', '512/512'] (input/output tokens per request, as the split names them)."""
    import argparse

    from harness.cli.args import positive_int

    workloads = []
    for part in text.split(","):
        lengths = part.strip().split("/")
        if len(lengths) != 2:
            raise argparse.ArgumentTypeError(f"expected INPUT/OUTPUT lengths like 4096/1024, got '{part.strip()}'")
        workloads.append("/".join(str(positive_int(x.strip())) for x in lengths))
    return workloads


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="fit efficiency factors and overheads to measured sweeps",
                              description=__doc__)  # fmt: skip
    p.add_argument("sweeps", nargs="+", metavar="SWEEP.jsonl", type=Path, help="files written by archscale sweep")
    p.add_argument("--hardware", type=Path, default=None, help="hardware TOML the sweeps ran on (archscale probe)")
    p.add_argument("--gpu", default=None, help="or a datasheet GPU name")
    p.add_argument("--engine", default=None, help="the engine the sweeps measured (default: the one in the files)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--train-configs", type=_names, default=None, help="fit on these configs, hold out the rest")
    split.add_argument("--holdout-configs", type=_names, default=None, help="hold out these configs")
    split.add_argument("--train-batch-sizes", type=positive_int_list, default=None, help="split by batch size")
    split.add_argument("--holdout-batch-sizes", type=positive_int_list, default=None, help="split by batch size")
    split.add_argument("--train-workloads", type=_workloads, default=None, metavar="IN/OUT,...",
                       help="split by workload: fit on these input/output lengths")  # fmt: skip
    split.add_argument("--holdout-workloads", type=_workloads, default=None, metavar="IN/OUT,...",
                       help="split by workload: hold out these input/output lengths")  # fmt: skip
    p.add_argument("--factors", type=_names, default=None, metavar="NAME,...",
                   help="fit only these factors, hold the rest at their priors (default: every factor the points "
                        "identify)")  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=Path("calibration.toml"), help="calibration TOML (default ./calibration.toml)"
    )
    add_drift_correct_arg(p)
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.set_defaults(run=run)


def write_calibration(out: Path, hardware: str, engine: str, table: dict) -> Path:
    """Merge [hardware.engine] into `out` (other tables kept), atomically, checked by the loader before replacing."""
    from harness.toml_io import dumps, write_atomic
    from perfmodel.calibration import load_calibration_file, read_toml

    existing = read_toml(out, "calibration file") if out.exists() else {}
    existing.setdefault(hardware, {})[engine] = table
    header = "# Written by `archscale calibrate`: efficiency factors fitted to measured sweeps (perfmodel/calibration.py).\n\n"
    return write_atomic(out, header + dumps(existing), check=load_calibration_file)


def run(args) -> int:
    from harness.calibrate.fit import calibrate, check_factors, choose_split
    from harness.sweep.metadata import run_metadata
    from harness.sweep.rows import load_sweeps
    from perfmodel.atomic_io import check_output_file
    from perfmodel.calibration import engine_priors, read_toml
    from perfmodel.errors import ArchscaleInputError
    from perfmodel.hardware import resolve_hardware

    hardware = resolve_hardware(args.gpu, args.hardware)
    factors = None if args.factors is None else check_factors(args.factors)
    check_output_file(args.out, "--out")  # before fitting: a bad path is one line, and nothing is written
    if args.out.exists():  # its other tables are kept: it must be a calibration file already
        read_toml(args.out, "calibration file")
    data = load_sweeps(args.sweeps, drift_correct=args.drift_correct, probe_state=hardware.machine_reference)
    if args.engine is not None and args.engine != data.engine:
        raise ArchscaleInputError(f"--engine {args.engine}, but the sweep files measured {data.engine}")
    split = choose_split(data, train_configs=args.train_configs, holdout_configs=args.holdout_configs,
                         train_batch_sizes=args.train_batch_sizes, holdout_batch_sizes=args.holdout_batch_sizes,
                         train_workloads=args.train_workloads, holdout_workloads=args.holdout_workloads)  # fmt: skip
    fit = calibrate(data, hardware, engine_priors(hardware, data.engine), split, factors)
    table = fit.toml_table(run_metadata())
    written = write_calibration(args.out, fit.hardware, fit.engine, table)
    if args.json:
        print(json.dumps({**asdict(fit), "out": str(written)}, indent=2, allow_nan=False, default=str))
        return 0
    print(format_report(fit, data, hardware))
    print(f"\nWrote [{fit.hardware}.{fit.engine}] to {written} (use: --calibration {written})")
    return 0


def format_report(fit: CalibrationFit, data: SweepData, hardware: Hardware) -> str:
    """The fit as text: split, factors, residuals before and after, output tok/s errors, worst points, exclusions."""
    import numpy as np

    from harness.calibrate.fit import RESIDUALS, output_tokens_errors_pct
    from harness.tables import format_table

    split_name = fit.split.name.replace("_", " ")
    kinds = sorted({r["phase"] for r in fit.residuals}, key=[label for label, *_ in RESIDUALS].index)
    lines = [
        f"Calibration of {fit.engine} on {fit.machine} (hardware entry {fit.hardware}), "
        f"{fit.n_points} training points, {len(fit.residuals)} residuals ({', '.join(kinds)}; log predicted / "
        "measured)",
        f"Trained on {split_name}: {', '.join(map(str, fit.split.train))}",
        f"Held out {split_name}: {', '.join(map(str, fit.split.holdout)) or '(none)'}",
        *([f"Drift-corrected: {fit.drift_correction.describe()}"] if fit.drift_correction else []),
        "",
        format_table(
            ("factor", "prior", "fitted", "std error", "status"),
            [
                (
                    f.name,
                    f"{f.prior:.4g}",
                    f"{f.value:.4g}",
                    f"{f.std_error:.2g}" if f.std_error is not None else "-",
                    f.status,
                )
                for f in fit.factors
            ],  # fmt: skip
        ),
        "",
        f"RMS log error on the training points: {fit.rms_log_error_prior:.3f} with the priors, "
        f"{fit.rms_log_error_fit:.3f} fitted (0.05 is about 5%)",
    ]
    held = [row for row in data.rows if not fit.split.is_train(row)]
    body = []
    for label, rows in (("training", [r for r in data.rows if fit.split.is_train(r)]), ("held out", held)):
        if not rows:
            continue
        before = np.abs(output_tokens_errors_pct(rows, hardware, fit.prior))
        after = np.abs(output_tokens_errors_pct(rows, hardware, fit.calibration))
        body.append((label, len(rows), f"{np.median(before):.1f}%", f"{before.max():.1f}%", f"{np.median(after):.1f}%",
                     f"{after.max():.1f}%"))  # fmt: skip
    lines += ["", "Output tokens/s |error|:",
              format_table(("points", "n", "median (priors)", "max (priors)", "median (fitted)", "max (fitted)"), body)]  # fmt: skip
    worst = sorted(fit.residuals, key=lambda r: -abs(r["log_ratio_fit"]))[:5]
    lines += ["", "Largest fitted residuals (log predicted/measured):"]
    lines += [f"  {r['config']} b={r['batch_size']} in={r['input_len']} out={r['output_len']} {r['phase']}: "
              f"{r['log_ratio_fit']:+.3f} (priors {r['log_ratio_prior']:+.3f})" for r in worst]  # fmt: skip
    if fit.excluded:
        lines += ["", f"Left out ({len(fit.excluded)}):", *(f"  {line}" for line in fit.excluded)]
    return "\n".join(lines)
