"""`archscale gemm-curve`: time each config's own GEMMs at M = 1, 2, 4, ... rows on this machine and show the
perfmodel's GEMM factor they reach beside the one the probed entry's curve (measured on one config) gives them: how
far the probe's curve carries to other architectures (harness/probe/gemm_curve_check.py)."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    from harness.cli.args import positive_int

    p = subparsers.add_parser(
        "gemm-curve",
        help="each config's own GEMM curve on this machine against a probed entry's curve",
        description=__doc__,
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="presets or config.json paths")
    p.add_argument("--hardware", metavar="FILE.toml", help="the probed entry of this machine (archscale probe)")
    p.add_argument("--gpu", help="`local`: the default probe file of this machine")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--rounds", type=positive_int, default=2, help="times every config is timed, all back to back")
    p.add_argument("--max-rows", type=positive_int, default=16, help="the largest M (M = 1, 2, 4, ...)")
    p.add_argument("--baseline", metavar="CONFIG", help="the config the entry's curve was measured on (`probe "
                   "--gemm-config`; default: the first config): every config's factor is also held against its own, "
                   "measured beside it")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object per config instead of the table")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.probe.gemm_curve_check import check_curves
    from harness.sweep.metadata import run_metadata
    from harness.tables import format_table
    from perfmodel import resolve_arch
    from perfmodel.hardware import resolve_hardware

    hardware = resolve_hardware(args.gpu, args.hardware)
    configs = list(dict.fromkeys([*args.configs, *([args.baseline] if args.baseline else [])]))  # each once
    archs = [resolve_arch(config) for config in configs]  # every config checked before anything is timed
    curves = check_curves(archs, hardware, args.device, args.rounds, args.max_rows)
    baseline = curves[configs.index(args.baseline or configs[0])]
    metadata = run_metadata()
    if args.json:
        for curve in curves:
            print(json.dumps({"config": curve.name, "hardware": hardware.name, "factors": curve.factors,
                              "entry_factors": curve.entry_factors, "baseline": baseline.name,
                              "off_vs_baseline_pct": {m: curve.off_vs_pct(baseline, m) for m in curve.factors
                                                      if m in baseline.factors},
                              "metadata": metadata}))  # fmt: skip
        return 0
    print("# " + json.dumps(metadata, sort_keys=True))
    body = [(curve.name, m, f"{curve.median(m):.2f}", f"{min(curve.factors[m]):.2f}–{max(curve.factors[m]):.2f}",
             f"{curve.entry_factors[m]:.2f}", f"{curve.off_pct(m):+.1f}%",
             f"{curve.off_vs_pct(baseline, m):+.1f}%" if m in baseline.factors else "-")
            for curve in curves for m in curve.factors]  # fmt: skip
    print(f"GEMM factor (roofline at {hardware.name}'s priors over the measured pass of the config's own GEMMs; "
          f"median of {args.rounds} rounds) against the entry's curve. 'off, entry': how far a prediction on the "
          "entry's curve lands from the config's GEMM time now (< 0: predicted slower; the machine's drift since the "
          f"probe included); 'off, {baseline.name}': the same for a curve measured on {baseline.name}'s GEMMs beside "
          "it in each round (the shapes' part alone)")  # fmt: skip
    print(format_table(("config", "M", "own factor", "rounds", "entry's curve", "off, entry", f"off, {baseline.name}"),
                       body))  # fmt: skip
    return 0
