"""`archscale probe`: measure this machine (matmul FLOP/s, copy bandwidth, launch and step overheads) and write
it as a hardware entry that `archscale predict --hardware FILE` (or `--gpu local`) predicts for."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="measure this machine's FLOP/s, bandwidth and overheads into a hardware entry",
        description=__doc__,
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="matmul dtype (default: float32 on cpu, bfloat16 on cuda)")  # fmt: skip
    p.add_argument(
        "--out", metavar="FILE.toml", help="where to write the entry (default: ~/.cache/archscale/local.toml)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (seconds; rough figures)")
    p.add_argument("--gemm-config", metavar="CONFIG",
                   help="preset or config.json whose GEMMs give the measured GEMM curve (default: small-base on the "
                        "CPU, llama-3.2-1b on a GPU; tiny-gqa4 and qwen3-0.6b with --quick)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the measurements as JSON instead of a summary")
    p.set_defaults(run=run)


def curve_spread_line(curve, settled_pct: float) -> str:
    """How far the GEMM curve's samples lay apart and how well their median is known, with a warning where it did
    not settle to `settled_pct` (the probe's target, ProbeSizes.curve_settled_pct) within the samples it took."""
    if len(curve.sample_time_s) < 2:
        return "GEMM curve samples:    1 (its spread over time not measured)"
    spread_rows, spread = max(curve.spread_pct().items(), key=lambda item: item[1])
    error_rows, error = max(curve.median_uncertainty_pct().items(), key=lambda item: item[1])
    line = (f"GEMM curve samples:    {len(curve.sample_time_s)}, the median kept, its standard error at most "
            f"{error:.1f}% (M={error_rows}); spread (slowest − fastest over the median) at most {spread:.0f}% "
            f"(M={spread_rows})")  # fmt: skip
    if error > settled_pct:
        line += (f" — the median did not settle to {settled_pct:g}%: the machine's speed moved while it was probed; "
                 "its predictions carry that uncertainty (probe again when it is quieter, or calibrate on a sweep)")  # fmt: skip
    return line


def format_summary(result, path) -> str:
    from harness.probe.entry import calibration_priors
    from harness.probe.measure import SIZES
    from harness.tables import format_table

    body = [(f"{r.m}x{r.n}x{r.k}", f"{r.flops_per_s / 1e9:,.1f}", f"{r.time_s * 1e6:,.1f}", r.calls_per_repeat)
            for r in result.matmuls]  # fmt: skip
    stream, priors = result.streaming, calibration_priors(result)
    unresolved_launch = "" if result.launch_overhead_s > 0 else (
        " — the deeper tiny model never came out slower: the machine was too busy to resolve the launch cost (probe "
        "again when it is quieter)")  # fmt: skip
    lines = [
        f"{result.display_name} ({result.device}, {result.dtype}{', --quick' if result.quick else ''}): "
        f"median of {result.repeats} repeats after {result.warmup} warm-up",
        format_table(("matmul m x n x k", "GFLOP/s", "µs per call", "calls per repeat"), body),
    ]
    if result.skipped_shapes:
        lines.append("skipped (one call too slow): " + ", ".join("x".join(map(str, s)) for s in result.skipped_shapes))
    lines += [
        f"peak {result.dtype} matmul:   {result.peak_flops_per_s / 1e9:,.1f} GFLOP/s (best shape)",
        f"copy bandwidth:        {result.copy_bandwidth_bytes_per_s / 1e9:,.1f} GB/s "
        f"(read + write, {result.copy_bytes // 2**20} MiB tensor)",
        f"weight stream (F.linear against a {stream.weight_bytes // 2**20:,} MiB weight): "
        + ", ".join(f"M={m} {stream.weight_bytes / t / 1e9:,.1f} GB/s" for m, t in stream.stream_time_s.items()),
        f"GEMM curve ({result.gemm_curve.arch.name}'s GEMMs, measured over roofline speed at M rows): "
        + ", ".join(
            f"M={m:g} {f:.2f}" for m, f in zip(priors["gemm_curve_rows"], priors["gemm_curve_factors"], strict=True)
        ),  # fmt: skip
        curve_spread_line(result.gemm_curve, SIZES[result.device, result.quick].curve_settled_pct),
        shape_grid_line(result.gemm_shapes, priors),
        f"decode attention:      {result.attention.bandwidth_bytes_per_s() / 1e9:,.1f} GB/s of KV cache read (our "
        f"engine, batch {result.attention.batch}, {result.attention.kv_lens[0]} vs {result.attention.kv_lens[1]} tokens)",
        *prefill_attention_lines(result, priors),
        f"engine decode step:    {result.launch_overhead_s * 1e6:,.2f} µs per launch the perfmodel counts, "
        f"{result.step_overhead_s * 1e6:,.2f} µs per step (our engine on tiny models){unresolved_launch}",
        f"memory:                {result.memory_bytes / 2**30:,.1f} GiB, {result.sm_count} "
        + ("SMs" if result.device == "cuda" else "torch threads"),
        f"Wrote {result.name} to {path} (use: archscale predict CONFIG --hardware {path} ...)",
    ]
    return "\n".join(lines)


def prefill_attention_lines(result, priors: dict) -> list[str]:
    prefill = result.prefill_attention
    if prefill is None:
        return []
    return [f"prefill attention:     {prefill.flops_per_s() / 1e9:,.1f} GFLOP/s, "
            f"{priors['attention_prefill_compute_efficiency']:.0%} of the peak (our engine's causal attention, "
            f"{prefill.arch.name}'s heads, {prefill.batch} x {prefill.input_len} tokens)"]  # fmt: skip


def shape_grid_line(grid, priors: dict) -> str:
    """The shape grid in one line: at each M, the range of its factors (relative to the curve's model), and how far
    its samples' timings lay apart."""
    ranges = ", ".join(f"M={m:g} {min(map(min, plane)):.2f}–{max(map(max, plane)):.2f}"
                       for m, plane in zip(priors["gemm_shape_rows"], priors["gemm_shape_factors"], strict=True))  # fmt: skip
    samples = len(grid.sample_time_s)
    spread = f"{samples} samples, timings at most {grid.spread_pct():.0f}% apart" if samples > 1 else "1 sample"
    return (f"GEMM shapes ({len(grid.n_values)} N × {len(grid.k_values)} K, speed relative to the curve's model; "
            f"{spread}): {ranges}")  # fmt: skip


def run(args) -> int:
    from harness.probe.entry import calibration_priors, write_hardware_file
    from harness.probe.measure import probe

    if args.out is not None:  # before measuring: a bad path is one line, not a lost probe
        from perfmodel.atomic_io import check_output_file

        check_output_file(args.out, "--out")
    result = probe(args.device, args.dtype, quick=args.quick, gemm_config=args.gemm_config)
    path = write_hardware_file(result, args.out)
    if args.json:
        json.dump(
            {
                **asdict(result),
                "peak_field": result.peak_field,
                "priors": calibration_priors(result),
                "path": str(path),
            },
            sys.stdout,
            indent=2,
            default=lambda value: value.tolist(),  # the shape grid's numpy arrays
        )
        sys.stdout.write("\n")
    else:
        print(format_summary(result, path))
    return 0
