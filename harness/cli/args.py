"""argparse pieces shared by the commands: value parsers (positive numbers, positive integers and comma lists of them) and
more than one command takes."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from perfmodel.arch import DTYPE_BYTES

# Larger counts (batch sizes, token lengths, repeats) are typos, and would overflow the model's 64-bit arithmetic.
MAX_INT = 2**31 - 1


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    if value > MAX_INT:
        raise argparse.ArgumentTypeError(f"expected a positive integer of at most {MAX_INT:,}, got {value:,}")
    return value


def non_negative_int(text: str) -> int:
    """0 or a positive integer (0 switches a limit off)."""
    if text.strip() == "0":
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got '{text}'") from None


def positive_int_list(text: str) -> tuple[int, ...]:
    """'1,16,128' -> (1, 16, 128), order kept; spaces around items are allowed. An empty item ('1,,2', a trailing
    comma) or a value given twice is an error: both are usually a typo for another value."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of positive integers, got '{text}'")
    if not all(parts):
        raise argparse.ArgumentTypeError(f"empty item in '{text}' (expected e.g. 1,8,64)")
    values = tuple(positive_int(part) for part in parts)
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{', '.join(map(str, repeated))} given more than once in '{text}'")
    return values


KV_DTYPE_BYTES = {"fp8": 1, "bf16": 2, "fp16": 2, "fp32": 4}  # as vLLM's --kv-cache-dtype names them
WEIGHT_DTYPES = ("float32", "bfloat16", "float16")  # what --dtype offers (perfmodel.arch.DTYPE_BYTES has their widths)


def add_hardware_args(parser) -> None:
    """Where the model runs: a datasheet GPU, this machine's probe, or a probe's hardware file (resolved by
    perfmodel.hardware.resolve_hardware: exactly one of --gpu and --hardware)."""
    parser.add_argument("--gpu", help="GPU name (see `archscale gpus`), or `local`: this machine's `archscale probe` "
                        "entry")  # fmt: skip
    parser.add_argument("--hardware", metavar="FILE.toml", help="a hardware entry written by `archscale probe`")


def add_dtype_arg(parser, default: str) -> None:
    parser.add_argument("--dtype", choices=WEIGHT_DTYPES,
                        help=f"weights/activations dtype (default: {default}); a CPU probe measures float32 only")  # fmt: skip


def with_dtype(arch, dtype: str | None):
    """`arch` at the byte width of `dtype` (None: as it is)."""
    return arch if dtype is None else replace(arch, dtype_bytes=DTYPE_BYTES[dtype])


def add_deployment_args(parser, kv_default: str) -> None:
    """The deployment options `predict` and `search` share: the KV cache's dtype, tensor and data parallelism, and
    the engine's scheduling limits (default: the engine's own, perfmodel/data/calibration.toml, or those of the
    release named by --engine-version)."""
    parser.add_argument("--kv-dtype", choices=tuple(KV_DTYPE_BYTES),
                        help=f"KV-cache dtype, separate from the weights' (default: {kv_default})")  # fmt: skip
    parser.add_argument("--tp", type=positive_int, default=1,
                        help="tensor-parallel GPUs per replica (heads must split as vLLM requires; default 1)")  # fmt: skip
    parser.add_argument("--dp", type=positive_int, default=1,
                        help="data-parallel replicas; --batch-size is the whole batch, split evenly (default 1)")  # fmt: skip
    parser.add_argument("--max-prefill-tokens", type=positive_int, default=None,
                        help="prompt tokens per prefill forward (default: the engine's, e.g. vLLM's "
                        "max_num_batched_tokens for the GPU)")  # fmt: skip
    parser.add_argument("--max-num-seqs", type=positive_int, default=None,
                        help="most sequences running at once (default: the engine's, e.g. vLLM's max_num_seqs for "
                        "the GPU; ours has no cap beyond the KV budget)")  # fmt: skip
    parser.add_argument("--cuda-graph-max-batch", type=non_negative_int, default=None, metavar="N",
                        help="largest decode batch the engine replays from a CUDA graph, smaller ones padded to the "
                        "next captured size; 0 = none (default: the engine's, e.g. 512 for vLLM, SGLang's "
                        "cuda_graph_max_bs)")  # fmt: skip
    parser.add_argument("--engine-version", metavar="RELEASE", default=None,
                        help="the vLLM or SGLang release whose scheduling defaults apply, e.g. 0.6.3 (default: the "
                        "newest; perfmodel/data/engine_releases.toml); the options above override it")  # fmt: skip


def deployment_kwargs(args) -> dict:
    """The options `add_deployment_args` adds, as the keyword arguments `perfmodel.predict` and `law.search.Deployment`
    take (a KV dtype of None: the architecture's own)."""
    return {
        "kv_dtype_bytes": None if args.kv_dtype is None else KV_DTYPE_BYTES[args.kv_dtype],
        "tp": args.tp,
        "dp": args.dp,
        "max_prefill_tokens": args.max_prefill_tokens,
        "max_num_seqs": args.max_num_seqs,
        "cuda_graph_max_batch": args.cuda_graph_max_batch,
        "engine_version": args.engine_version,
    }


def add_drift_correct_arg(parser) -> None:
    """`--drift-correct`, which `calibrate` and `compare` share (harness/sweep/drift.py)."""
    parser.add_argument("--drift-correct", action="store_true",
                        help="bring every measurement, by the machine reference timed around it, to the machine state "
                        "of the probe (when the hardware entry records it), else the state typical of the rows (rows "
                        "of `archscale sweep` over several passes; harness/sweep/drift.py)")  # fmt: skip
