"""`archscale gpus`: the GPU datasheet table the estimator uses, with the source of every figure."""

from __future__ import annotations

import json
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gpus", help="list the GPUs the estimator knows, with datasheet sources")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sources", action="store_true", help="print the datasheet source of every figure")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.tables import format_table
    from perfmodel import list_gpus

    gpus = list_gpus()
    if args.json:
        rows = [{k: v for k, v in vars(gpu).items()} | {"aliases": list(gpu.aliases)} for gpu in gpus]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("name", "model", "HBM GB/s", "bf16 dense TFLOP/s", "memory GB", "SMs", "aliases")
    body = [
        (
            gpu.name,
            gpu.display_name,
            f"{gpu.hbm_bandwidth_bytes_per_s / 1e9:,.0f}",
            f"{gpu.peak_bf16_flops_per_s / 1e12:,.0f}",
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
