"""`archscale gpus`: the GPU datasheet table the estimator uses, with the source of every figure, and optionally
machines measured by `archscale probe` (--hardware FILE)."""

from __future__ import annotations

import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gpus", help="list the GPUs the estimator knows, with datasheet sources")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sources", action="store_true", help="print the datasheet source of every figure")
    p.add_argument("--hardware", action="append", default=[], metavar="FILE.toml",
                   help="also list a hardware entry written by `archscale probe` (repeatable)")  # fmt: skip
    p.set_defaults(run=run)


def _tflops(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e12:,.0f}" if value >= 100e12 else f"{value / 1e12:,.3g}"  # a probed CPU: 0.05


def run(args) -> int:
    from harness.tables import format_table
    from perfmodel import list_gpus
    from perfmodel.hardware import load_hardware_file

    gpus = list_gpus() + [load_hardware_file(path) for path in args.hardware]
    if args.json:
        rows = [{k: v for k, v in vars(gpu).items()} | {"aliases": list(gpu.aliases)} for gpu in gpus]
        json.dump(rows, sys.stdout, indent=2, default=str)  # default=str: TOML dates in a file's metadata
        sys.stdout.write("\n")
        return 0
    header = ("name", "model", "HBM GB/s", "bf16 dense TFLOP/s", "fp32 TFLOP/s", "memory GB", "SMs", "aliases")
    body = [
        (
            gpu.name + (" (measured)" if gpu.measured else ""),
            gpu.display_name,
            f"{gpu.hbm_bandwidth_bytes_per_s / 1e9:,.0f}",
            _tflops(gpu.peak_bf16_flops_per_s),
            _tflops(gpu.peak_fp32_flops_per_s),
            f"{gpu.memory_bytes / 1e9:.0f}",
            gpu.sm_count,
            ", ".join(gpu.aliases),
        )
        for gpu in gpus
    ]
    print(format_table(header, body))
    if args.sources:
        for gpu in gpus:
            print(f"\n{gpu.name}:")
            for figure, source in gpu.sources.items():
                print(f"  {figure}: {source}")
    return 0
