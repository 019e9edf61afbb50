"""`archscale bench-kernel`: benchmark the Triton GQA decode kernel against torch SDPA and FlexAttention on a GPU.

One JSON line per point (with run metadata) is appended to results/kernels/gqa_decode-<gpu>.jsonl; points
already there are skipped (resume), a shape that does not fit is recorded with status "oom", and a plot of
achieved bandwidth is redrawn from the whole file at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli.args import positive_int, positive_int_list


def add_parser(subparsers) -> None:
    from kernels.bench import (
        DEFAULT_BATCH_SIZES,
        DEFAULT_GROUPS,
        DEFAULT_HEAD_DIMS,
        DEFAULT_KV_LENS,
        DEFAULT_NUM_KV_HEADS,  # fmt: skip
    )

    def csv_default(values):
        return ",".join(map(str, values))

    p = subparsers.add_parser("bench-kernel", help="benchmark the GQA decode kernel vs SDPA and FlexAttention (GPU)",
                              description=__doc__)  # fmt: skip
    p.add_argument("--batch-sizes", type=positive_int_list, default=DEFAULT_BATCH_SIZES,
                   help=f"default {csv_default(DEFAULT_BATCH_SIZES)}")  # fmt: skip
    p.add_argument("--kv-lens", type=positive_int_list, default=DEFAULT_KV_LENS,
                   help=f"default {csv_default(DEFAULT_KV_LENS)}")  # fmt: skip
    p.add_argument("--groups", type=positive_int_list, default=DEFAULT_GROUPS,
                   help=f"query heads per KV head, default {csv_default(DEFAULT_GROUPS)}")  # fmt: skip
    p.add_argument("--head-dims", type=positive_int_list, default=DEFAULT_HEAD_DIMS,
                   help=f"default {csv_default(DEFAULT_HEAD_DIMS)}")  # fmt: skip
    p.add_argument("--num-kv-heads", type=positive_int, default=DEFAULT_NUM_KV_HEADS)
    p.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    p.add_argument("--out", type=Path, default=None, help="JSONL file (default results/kernels/gqa_decode-<gpu>.jsonl)")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: the JSONL path with .png)")
    p.add_argument("--no-flex", action="store_true", help="skip FlexAttention (it compiles per shape)")
    p.add_argument("--dry-run", action="store_true", help="list the grid and which points are already done")
    p.set_defaults(run=run)


def default_out_path(device_name: str) -> Path:
    from harness.sweep.results_io import device_slug

    slug = device_slug(device_name)
    return Path("results") / "kernels" / f"gqa_decode-{slug}.jsonl"


def run(args) -> int:
    from harness.sweep.results_io import finished_keys
    from kernels.bench import KEY_FIELDS, grid
    from perfmodel.errors import ArchscaleInputError

    points = grid(args.batch_sizes, args.kv_lens, args.groups, args.head_dims, args.num_kv_heads, args.dtype)
    import torch

    has_cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if has_cuda else "no-gpu"
    out = args.out or default_out_path(device_name)
    done = finished_keys(out, KEY_FIELDS)
    todo = [p for p in points if p.key() not in done]
    if args.dry_run:
        print(f"{len(points)} points, {len(points) - len(todo)} already in {out}, {len(todo)} to measure:")
        for p in todo:
            print(f"  batch {p.batch_size:>4}  kv_len {p.kv_len:>6}  group {p.group:>2}  head_dim {p.head_dim:>3}  "
                  f"K+V {p.kv_cache_bytes / 2**30:7.2f} GiB")  # fmt: skip
        return 0
    if not has_cuda:
        raise ArchscaleInputError("bench-kernel needs a CUDA GPU and none was found (--dry-run lists the grid)")
    from harness.sweep.results_io import check_writable
    from perfmodel.atomic_io import check_output_file

    plot_path = args.plot or out.with_suffix(".png")
    check_writable(out)  # both outputs checked before the first point is measured
    check_output_file(plot_path, "--plot")
    measure(args, todo, out, device_name)
    from harness.report.kernel_plot import plot_kernel_bench
    from harness.sweep.results_io import read_jsonl

    plot_kernel_bench(read_jsonl(out), plot_path, title=device_name)
    print(f"Wrote {out} and {plot_path}")
    return 0


def measure(args, todo, out: Path, device_name: str) -> None:
    from harness.sweep.metadata import run_metadata
    from harness.sweep.results_io import append_jsonl
    from kernels.bench import flex_attention_or_reason, measure_copy_bandwidth_bytes_per_s, measure_point
    from perfmodel.hardware import gpu_from_device_name

    metadata = run_metadata()
    datasheet = gpu_from_device_name(device_name)
    peak = datasheet.hbm_bandwidth_bytes_per_s if datasheet else None
    copy_bandwidth = measure_copy_bandwidth_bytes_per_s()
    print(f"{device_name}: measured copy bandwidth {copy_bandwidth / 1e9:,.0f} GB/s"
          + (f" (datasheet {peak / 1e9:,.0f} GB/s)" if peak else ""))  # fmt: skip
    flex, flex_status = (None, "skipped (--no-flex)") if args.no_flex else flex_attention_or_reason()
    for i, point in enumerate(todo, 1):
        row = measure_point(point, copy_bandwidth, peak, flex=flex)
        if flex is None:
            row["flex_status"] = flex_status
        append_jsonl(out, {**row, "metadata": metadata})
        summary = row["status"]
        if row["status"] == "ok":
            summary = (f"ours {row['triton_bytes_per_s'] / 1e9:7.0f} GB/s "
                       f"({row['triton_pct_of_copy_bandwidth']:.0f}% of copy), "
                       f"sdpa {row.get('sdpa_bytes_per_s', float('nan')) / 1e9:7.0f} GB/s, fastest {row['fastest']}")  # fmt: skip
        print(f"[{i}/{len(todo)}] batch {point.batch_size} kv_len {point.kv_len} group {point.group} "
              f"head_dim {point.head_dim}: {summary}", file=sys.stderr, flush=True)  # fmt: skip
