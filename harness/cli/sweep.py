"""`archscale sweep`: measure configs × batch sizes × lengths on an engine, one JSON line per point, resumable.

Re-running the same command skips the points already in the output file; an interrupted run continues where it
stopped. Every row holds the measurement and the perfmodel's prediction for the same point (schema in
results/README.md); `--dry-run` lists the points and their predictions without measuring anything. `--passes P`
measures the whole grid P times, each pass after the one before, into --out and <out>-pass2.jsonl ...: back-to-back
repeats miss the slow drift of a shared machine, which the spread between passes shows (calibrate and compare merge
a point's passes by median).

With `--ray [ADDRESS]` the points run as Ray tasks on a cluster (one node or many; `pip install
'archscale[distributed]'`) and this process, the driver, alone appends their rows to --out as they finish, so resume
and the file's guarantees are those of the serial sweep. On CUDA each point takes one GPU. On the CPU a measurement
needs the cores to itself: by default each point asks Ray for as many CPUs as this machine has, i.e. one point at a
time on a node of that size, and torch runs with that many threads; --ray-cpus-per-point changes it.

With `--engine vllm` or `--engine sglang` each point runs through that engine's offline Python API in a process of
the engine's own Python (`--engine-python`; default: this one, if it has the engine), with dummy weights from the
config and token-id prompts; `--engine-arg KEY=VALUE` passes an engine argument (the engine's defaults otherwise).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from harness.cli.args import positive_float, positive_int, positive_int_list
from harness.sweep.options import default_out_path, engine_options, external_setup, hardware_for_prediction
from harness.sweep.points import POINT_ORDERS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="measure throughput over batch sizes on an engine (CPU or CUDA)",
                              description=__doc__)  # fmt: skip
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="preset name or path to a config.json")
    p.add_argument("--engine", default="torch",
                   help="torch (ours), vllm or sglang (their offline Python APIs, one engine process per config)")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="compute dtype (default float32 on cpu, bfloat16 on cuda)")  # fmt: skip
    p.add_argument("--attention", choices=("torch", "triton"), default=None,
                   help="decode attention: triton (kernels.gqa_decode, default on cuda) or torch SDPA (default on cpu)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int_list, required=True, help="e.g. 1,2,4,8,16")
    p.add_argument("--input-len", type=positive_int_list, required=True, help="prompt tokens, e.g. 64,512")
    p.add_argument("--output-len", type=positive_int_list, required=True, help="generated tokens, e.g. 16,128")
    p.add_argument("--out", type=Path, default=None, help="JSONL (default results/sweeps/<engine>-<device>.jsonl)")
    p.add_argument("--repeats", type=positive_int, default=1, help="timed runs per point after a warm-up (median)")
    p.add_argument("--passes", type=positive_int, default=1,
                   help="measure the whole grid N times, each pass after the one before, into --out and "
                        "<out>-pass2.jsonl ...: calibrate and compare take each point's median over the passes and "
                        "report their spread (repeats run back to back and miss slow drift)")  # fmt: skip
    p.add_argument("--order", choices=POINT_ORDERS, default="config",
                   help="the order points are measured in: config (each config's curve first; default) or "
                        "interleaved (at each workload every config back to back: fair comparisons of configs on a "
                        "machine whose speed drifts); vLLM and SGLang serve each config's points with one engine, "
                        "config by config, whatever the order")  # fmt: skip
    p.add_argument("--hardware", type=Path, default=None, help="hardware TOML to predict for (from archscale probe)")
    p.add_argument("--gpu", default=None, help="datasheet GPU to predict for (default: the GPU found, or on CPU the "
                                              "local probe file if there is one)")  # fmt: skip
    p.add_argument("--calibration", metavar="FILE.toml", default=None,
                   help="predict with the factors `archscale calibrate` fitted (default: the priors)")  # fmt: skip
    p.add_argument("--block-size", type=positive_int, default=None,
                   help="KV-cache page size in tokens (default 16; vllm: block_size, sglang: page_size)")  # fmt: skip
    p.add_argument("--max-prefill-tokens", type=positive_int, default=None,
                   help="prompt tokens per prefill forward (whole sequences), default 8192; vllm: "
                        "max_num_batched_tokens, sglang: chunked_prefill_size (default: the engine's)")  # fmt: skip
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="run the decode step eagerly on CUDA (vllm: enforce_eager, sglang: disable_cuda_graph)")  # fmt: skip
    p.add_argument("--engine-python", metavar="PY", default=None,
                   help="vllm/sglang: the Python of the engine's environment (default: this one, if it has the "
                        "engine)")  # fmt: skip
    p.add_argument("--engine-arg", metavar="KEY=VALUE", action="append", type=engine_arg, default=None,
                   help="vllm/sglang: an engine argument (LLM(...) / Engine(...) keyword), VALUE read as JSON when it "
                        "parses; repeatable. E.g. max_num_seqs=256, attention_backend=FLASH_ATTN")  # fmt: skip
    p.add_argument("--engine-timeout", metavar="SECONDS", type=positive_float, default=None,
                   help="vllm/sglang: the most one point may take, engine start-up included (default 1800)")  # fmt: skip
    p.add_argument("--seed", type=seed, default=0, help="weights and prompts seed (0 to 2^63 - 1)")
    p.add_argument("--dry-run", action="store_true", help="list the points (and predictions) without measuring")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--tp", type=positive_int, default=1,
                   help="tensor-parallel GPUs per point (1; more needs an engine with tensor parallelism)")  # fmt: skip
    p.add_argument("--ray", nargs="?", const="", default=None, type=ray_address, metavar="ADDRESS",
                   help="run the points as Ray tasks; ADDRESS: HOST:PORT of the head node, ray://HOST:PORT, auto or "
                        "local (none: RAY_ADDRESS, else the cluster started on this machine, else a new local one). "
                        "This process alone writes --out, as rows finish. Put it after the configs")  # fmt: skip
    p.add_argument("--ray-cpus-per-point", type=positive_int, default=None, metavar="N",
                   help="CPUs Ray reserves per point (and torch threads in it). Default: on CUDA 1; on the CPU all of "
                        "this machine's CPUs, since a CPU measurement needs the cores to itself (one point at a "
                        "time per node of that size); lower it to run several points per node")  # fmt: skip
    p.set_defaults(run=run)


def ray_address(text: str) -> str:
    """`--ray`'s ADDRESS, checked for the shape of one, so a config name after a bare --ray is not taken for it."""
    import argparse

    if text in ("", "auto", "local") or text.startswith("ray://") or re.fullmatch(r"[\w.\-\[\]:]+:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"'{text}' is not a Ray address (HOST:PORT, ray://HOST:PORT, auto or local); "
                                     "a bare --ray goes after the configs")  # fmt: skip


def engine_arg(text: str) -> tuple[str, object]:
    """`--engine-arg KEY=VALUE` (harness.engines.external.parse_engine_arg)."""
    import argparse

    from harness.engines.external import parse_engine_arg

    try:
        return parse_engine_arg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed(text: str) -> int:
    """A seed torch.manual_seed takes: an integer from 0 to 2^63 - 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2^63 - 1, got {value}")
    return value


def run(args) -> int:
    from harness.engines import EXTERNAL_ENGINES, get_engine
    from harness.sweep.points import build_points
    from perfmodel import resolve_arch
    from perfmodel.errors import ArchscaleInputError

    get_engine(args.engine)  # an engine that does not exist is one clear line
    external = args.engine in EXTERNAL_ENGINES
    if args.tp > 1:
        if external:
            why = "the vLLM/SGLang adapters run tensor_parallel_size 1 for now (TP sweeps are not wired yet)"
        else:
            why = "TP sweeps need an engine with tensor parallelism (the vLLM/SGLang adapters, TP not wired yet)"
        raise ArchscaleInputError(f"--tp {args.tp}: the {args.engine} engine runs a point on one GPU; {why}")
    if args.ray_cpus_per_point is not None and args.ray is None:
        raise ArchscaleInputError("--ray-cpus-per-point applies to --ray sweeps only")
    if not external and (args.engine_python or args.engine_arg or args.engine_timeout):
        raise ArchscaleInputError("--engine-python, --engine-arg and --engine-timeout apply to --engine vllm|sglang")
    archs = [resolve_arch(spec) for spec in args.configs]
    probe, device_name = None, None
    if external:
        device, probe, device_name = external_setup(args)
    else:
        import torch

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise ArchscaleInputError("--device cuda asked for, but torch sees no CUDA GPU (use --device cpu)")
    hardware, note = hardware_for_prediction(args, device, device_name)
    if args.calibration is not None:  # a bad file is one line now, not a missing prediction in every row
        from perfmodel.calibration import get_calibration
        from perfmodel.errors import ArchscaleInputError

        if hardware is None:
            raise ArchscaleInputError(f"--calibration {args.calibration}: no hardware entry to predict for "
                                      "(pass --hardware FILE.toml or --gpu NAME)")  # fmt: skip
        get_calibration(hardware, args.engine, args.calibration)
    options = engine_options(args, device, hardware, probe["python"] if probe else args.engine_python)
    if external:
        get_engine(args.engine).check_options(options)
    else:
        from harness.engines.torch_engine import check_options

        check_options(options)
    resources = None
    if args.ray is not None:
        from harness.sweep.ray_fanout import import_ray, ray_resources

        resources = ray_resources(device, args.tp, args.ray_cpus_per_point)
        if not args.dry_run:
            import_ray()  # not installed: one line before anything is written
    points = build_points(archs, batch_sizes=args.batch_size, input_lens=args.input_len, output_lens=args.output_len,
                          engine=args.engine, options=options, hardware=hardware, calibration_file=args.calibration,
                          engine_version=probe.get("version") if probe else None, order=args.order)  # fmt: skip
    out = args.out or default_out_path(args.engine, device, device_name)
    from harness.sweep.results_io import check_writable
    from harness.sweep.rows import pass_paths

    outs = pass_paths(out, args.passes)
    for path in outs:  # before anything is measured or printed; a dry run says it too but creates nothing
        check_writable(path, create=not args.dry_run)
    for number, path in enumerate(outs, 1):
        if len(outs) > 1:
            print(f"Pass {number} of {len(outs)}: {path}")
        _run_pass(args, points, path, options, hardware, note, probe, resources)
    return 0


def _run_pass(args, points, out: Path, options, hardware, note, probe, resources) -> None:
    """One pass over the grid into `out`: plan (resume), say what is to be done, measure, summarize."""
    from harness.sweep.points import format_row, plan_sweep, predict_point, run_sweep

    plan = plan_sweep(points, out, dry_run=args.dry_run)
    if plan.warning:
        print(f"archscale: warning: {plan.warning}", file=sys.stderr)
    if note:
        print(f"archscale: note: {note}", file=sys.stderr)
    print(f"{len(points)} points, {plan.done} already in {out}, {len(plan.todo)} to measure "
          f"({options.device}, {options.dtype}, attention {options.attention}"
          f"{', predicted for ' + hardware.name if hardware else ''})")  # fmt: skip
    if probe is not None:
        print(f"Engine {args.engine} {probe.get('version') or '(version unknown)'} from {probe['python']}, one "
              f"process per config; engine arguments: {json_args(options.engine_args)}")  # fmt: skip
    if resources is not None:
        where = args.ray or os.environ.get("RAY_ADDRESS") or "a local cluster (or the one started on this machine)"
        print(f"On Ray at {where}: each point takes {resources.describe()}")
    if args.dry_run:
        for point in plan.todo:
            predicted, why_not = predict_point(point)
            guess = f"predicted {predicted['output_tokens_per_s']:,.1f} out tok/s" if predicted else why_not
            print(f"  {point.label()}: {guess}")
        return
    from harness.sweep.metadata import run_metadata

    metadata = run_metadata()
    if probe is not None:  # the engine's environment, not archscale's, runs the points
        metadata |= {f"{args.engine}_version": probe.get("version"), "engine_python": probe["python"],
                     "engine_python_version": probe.get("python_version"),
                     "engine_torch_version": probe.get("torch_version")}  # fmt: skip
    report = {
        "progress": not args.quiet,
        "on_row": (lambda row: print(format_row(row), flush=True)) if args.quiet else None,
    }
    if resources is not None and plan.todo:
        from harness.sweep.ray_fanout import ray_session, run_sweep_ray

        with ray_session(args.ray):
            rows = run_sweep_ray(plan.todo, out, metadata, resources=resources, **report)
    else:
        rows = run_sweep(plan.todo, out, metadata, **report)
    print(format_summary(rows))
    print(f"Wrote {len(rows)} rows to {out}")


def json_args(engine_args: dict | None) -> str:
    """Engine arguments as a user types them: KEY=VALUE with VALUE in JSON; "the engine's defaults" when none."""
    import json

    return " ".join(f"{k}={json.dumps(v)}" for k, v in (engine_args or {}).items()) or "the engine's defaults"


def format_summary(rows: list[dict]) -> str:
    from harness.tables import format_table, humanize_seconds

    def pair(row, key, fmt):
        measured = fmt(row[key]) if row.get(key) is not None else "-"
        predicted = row.get("predicted") or {}
        return measured, fmt(predicted[key]) if predicted.get(key) is not None else "-"

    body = []
    for row in rows:
        tps, tps_pred = pair(row, "output_tokens_per_s", lambda v: f"{v:,.1f}")
        ttft, ttft_pred = pair(row, "ttft_s", humanize_seconds)
        tpot, tpot_pred = pair(row, "tpot_s", humanize_seconds)
        body.append((row["config"], row["batch_size"], row["input_len"], row["output_len"], row["status"],
                     tps, tps_pred, ttft, ttft_pred, tpot, tpot_pred))  # fmt: skip
    header = ("config", "batch", "in", "out", "status", "out tok/s", "predicted", "TTFT", "predicted", "TPOT",
              "predicted")  # fmt: skip
    return format_table(header, body) if body else "(nothing measured)"
