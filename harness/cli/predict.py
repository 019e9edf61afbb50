"""`archscale predict`: tokens/s, TTFT, TPOT, memory and bounds of architectures on a GPU (datasheet) or on a
machine measured by `archscale probe` (--hardware FILE, --gpu local); no GPU needed."""

from __future__ import annotations

import json
import sys

from harness.cli.args import (
    add_deployment_args,
    add_dtype_arg,
    add_hardware_args,
    deployment_kwargs,
    positive_int,
    positive_int_list,
    with_dtype,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict serving throughput of architectures (presets or config.json) on a GPU",
        description=__doc__,
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="preset name or path to a config.json")
    add_hardware_args(p)
    p.add_argument("--batch-size", type=positive_int_list, required=True, help="e.g. 128 or 1,8,64,256")
    p.add_argument("--input-len", type=positive_int, required=True, help="prompt tokens per request")
    p.add_argument("--output-len", type=positive_int, required=True, help="generated tokens per request")
    p.add_argument("--engine", default="torch", choices=("torch", "vllm", "sglang"))
    p.add_argument("--calibration", metavar="FILE.toml", default=None,
                   help="efficiency factors fitted by `archscale calibrate` (default: the priors)")  # fmt: skip
    add_dtype_arg(p, default="each config's own")
    add_deployment_args(p, kv_default="the weights' dtype")
    p.add_argument("--json", action="store_true", help="JSON: one object, or a list for several points")
    p.add_argument("--breakdown", action="store_true", help="also print the per-operator time breakdown")
    p.set_defaults(run=run)


def format_predictions(rows: list[dict]) -> str:
    from harness.tables import format_table, humanize_bytes, humanize_count, humanize_seconds

    header = ("config", "batch", "out tok/s", "total tok/s", "TTFT mean", "TTFT p99", "TPOT", "memory", "max seqs",
              "prefill", "decode", "N", "r", "GQA")  # fmt: skip
    body = [
        (
            r["config"],
            r["batch_size"],
            f"{r['output_tokens_per_s']:,.0f}",
            f"{r['total_tokens_per_s']:,.0f}",
            humanize_seconds(r["ttft_s"]),
            humanize_seconds(r["ttft_p99_s"]),
            humanize_seconds(r["tpot_s"]),
            humanize_bytes(r["peak_memory_bytes"]),
            f"{r['max_concurrent_seqs']}" + ("*" if r["capacity_limited"] else ""),
            r["prefill_bound"],
            r["decode_bound"],
            humanize_count(r["n_params_non_embedding"]),
            f"{r['mlp_attn_ratio']:.2f}",
            r["gqa_group"],
        )
        for r in rows
    ]
    first = rows[0]
    hardware = (
        f"{first['gpu']} ({first['hardware']}{', measured by archscale probe' if first['hardware_measured'] else ''})"
    )
    priors = "the hardware file" if first["calibration_source"] == "hardware entry" else first["calibration_source"]
    kv = "" if first["kv_dtype_bytes"] == first["dtype_bytes"] else f" · {first['kv_dtype_bytes']}-byte KV cache"
    if first["tp"] > 1 or first["dp"] > 1:
        kv += f" · TP {first['tp']} x DP {first['dp']} ({first['tp'] * first['dp']} GPUs; memory per GPU)"
    release = f" {first['engine_version']}" if first["engine_version"] else ""
    lines = [
        f"{hardware} · {first['engine']}{release} · in {first['input_len']} / out {first['output_len']} tokens{kv}"
        + (
            f" · calibrated ({first['calibration_source']})"
            if first["calibrated"]
            else f" · uncalibrated priors (see {priors})"
        ),
        format_table(header, body),
    ]
    if any(r["capacity_limited"] for r in rows):
        lines.append(
            "* more requests than run at once at full length ('max seqs': the KV cache or the engine's cap): "
            + (
                "as running ones finish, waiting ones join (vLLM: as KV blocks free up, so more may run)"
                if first["engine_policy"].get("chunked_prefill")
                else "they run in waves of 'max seqs'"
            )
        )
    lines.append("TTFT: per request, all queued at once (a later wave waits for the earlier ones); mean and p99")
    return "\n".join(lines)


def format_breakdown(row: dict) -> str:
    from harness.tables import format_table, humanize_seconds

    breakdown = row["breakdown"]
    prefill, decode = breakdown["prefill_s"], breakdown["decode_s"]
    total_prefill, total_decode = sum(prefill.values()), sum(decode.values())
    body = [(op, breakdown["op_class"][op], humanize_seconds(prefill[op]), f"{prefill[op] / total_prefill:.0%}",
             humanize_seconds(decode[op]), f"{decode[op] / total_decode:.0%}" if total_decode else "-")
            for op in prefill]  # fmt: skip
    title = (f"{row['config']} batch {row['concurrency']} (one wave): time per operator, without the per-step "
             f"overhead; decode attention occupancy {row['decode_attention_occupancy']:.0%} of the SMs")  # fmt: skip
    return title + "\n" + format_table(("op", "class", "prefill", "share", "decode (all steps)", "share"), body)


def run(args) -> int:
    from perfmodel import predict, resolve_arch
    from perfmodel.hardware import resolve_hardware

    gpu = resolve_hardware(args.gpu, args.hardware)
    archs = [with_dtype(resolve_arch(spec), args.dtype) for spec in args.configs]
    rows = []
    for arch in archs:
        for batch_size in args.batch_size:
            prediction = predict(
                arch,
                gpu,
                batch_size=batch_size,
                input_len=args.input_len,
                output_len=args.output_len,
                engine=args.engine,
                calibration_file=args.calibration,
                **deployment_kwargs(args),
            )
            rows.append(prediction.to_dict())
    if args.json:
        if not args.breakdown:
            for row in rows:
                row.pop("breakdown")
        json.dump(rows[0] if len(rows) == 1 else rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(format_predictions(rows))
    if args.breakdown:
        for row in rows:
            print()
            print(format_breakdown(row))
    return 0
