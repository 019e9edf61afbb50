"""`predict`: the estimate for one architecture and one workload, as a `Prediction` with a JSON-ready dict.

It runs the same vectorized code as the search (a batch of one), so the two never disagree, and it turns
the user-facing failures (weights larger than the GPU, one sequence that does not fit, a dtype whose peak the
hardware entry lacks) into one clear error. The hardware may be a datasheet GPU or a machine measured by
`archscale probe`; its own calibration priors, if any, are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perfmodel.arch import Arch
from perfmodel.arch_batch import ArchBatch
from perfmodel.calibration import calibration_source, get_calibration
from perfmodel.engine_releases import POLICY_FIELDS
from perfmodel.errors import ArchscaleInputError
from perfmodel.estimator import estimate
from perfmodel.hardware import Hardware
from perfmodel.parallel import check_tp

GiB = 2**30


@dataclass(frozen=True)
class Prediction:
    """One architecture on one deployment: plain fields (scalars, the `Arch`, the `Hardware`), so a prediction
    copies, pickles and crosses process boundaries. Times in seconds; see perfmodel/estimator.py for each field."""

    arch: Arch
    gpu: Hardware
    engine: str
    batch_size: int
    input_len: int
    output_len: int
    kv_dtype_bytes: int
    tp: int  # tensor-parallel GPUs per replica
    dp: int  # data-parallel replicas
    calibrated: bool
    calibration_source: str
    output_tokens_per_s: float
    total_tokens_per_s: float
    ttft_s: float  # mean over requests, all arriving at once
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_s: float
    prefill_time_s: float  # one full wave, all its prefill forwards
    decode_time_s: float  # one full wave
    total_time_s: float
    peak_memory_bytes: int  # per GPU
    weight_bytes: int  # per GPU
    kv_bytes_per_token: int
    max_concurrent_seqs: int
    concurrency: int
    capacity_limited: bool
    prefill_bound: str  # "compute" | "memory"
    decode_bound: str
    decode_attention_occupancy: float
    prefill_op_time_s: dict = field(default_factory=dict)  # op -> seconds, one full wave
    decode_op_time_s: dict = field(default_factory=dict)  # op -> seconds, all decode steps of one full wave
    op_classes: dict = field(default_factory=dict)  # op -> operator class ("attention": prefill / decode class)
    engine_version: str | None = None  # the vLLM/SGLang release whose scheduling defaults applied; None: the newest
    engine_policy: dict = field(default_factory=dict)  # the scheduling policy the estimate ran (POLICY_FIELDS)

    def to_dict(self) -> dict:
        return {
            "config": self.arch.name,
            "gpu": self.gpu.name,
            "hardware": self.gpu.display_name,
            "hardware_measured": self.gpu.measured,
            "dtype_bytes": self.arch.dtype_bytes,
            "kv_dtype_bytes": self.kv_dtype_bytes,
            "tp": self.tp,
            "dp": self.dp,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "engine_policy": dict(self.engine_policy),
            "batch_size": self.batch_size,
            "input_len": self.input_len,
            "output_len": self.output_len,
            **{name: getattr(self, name) for name in SCALAR_FIELDS},
            "n_params_non_embedding": self.arch.n_params_non_embedding,
            "n_params_total": self.arch.n_params_total,
            "mlp_attn_ratio": self.arch.mlp_attn_ratio,
            "gqa_group": self.arch.gqa_group,
            "calibrated": self.calibrated,
            "calibration_source": self.calibration_source,
            "breakdown": {
                "prefill_s": dict(self.prefill_op_time_s),
                "decode_s": dict(self.decode_op_time_s),
                "op_class": dict(self.op_classes),
            },
        }


SCALAR_FIELDS = ("output_tokens_per_s", "total_tokens_per_s", "ttft_s", "ttft_p50_s", "ttft_p99_s", "tpot_s",
                 "prefill_time_s", "decode_time_s", "total_time_s", "peak_memory_bytes", "weight_bytes",
                 "kv_bytes_per_token", "max_concurrent_seqs", "concurrency", "capacity_limited", "prefill_bound",
                 "decode_bound", "decode_attention_occupancy")  # fmt: skip


def predict(arch: Arch, gpu: Hardware, *, batch_size: int, input_len: int, output_len: int, engine: str = "torch",
            calibration_file=None, kv_dtype_bytes: int | None = None, max_prefill_tokens: int | None = None,
            max_num_seqs: int | None = None, tp: int = 1, dp: int = 1,
            cuda_graph_max_batch: int | None = None, engine_version: str | None = None):  # fmt: skip
    """`calibration_file`: a file `archscale calibrate` wrote, used instead of the priors (perfmodel.calibration).
    `kv_dtype_bytes`: the KV cache's element size (default: the architecture's dtype); `max_prefill_tokens`: prompt
    tokens per prefill forward, `max_num_seqs` the engine's cap on running sequences (0: none) and
    `cuda_graph_max_batch` its largest CUDA-graph decode batch (0: no padding) (defaults: the engine's, from the
    calibration, or those of vLLM/SGLang release `engine_version`); `tp`, `dp`: tensor-parallel GPUs per
    replica and replicas (perfmodel/parallel.py): `batch_size` is the whole batch, memory figures are per GPU."""
    for label, value in (("batch size", batch_size), ("input length", input_len), ("output length", output_len),
                         ("max prefill tokens", max_prefill_tokens or 1), ("max num seqs", max_num_seqs or 1)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArchscaleInputError(f"{label} must be a positive integer, got {value!r}")
    if cuda_graph_max_batch is not None and (
        isinstance(cuda_graph_max_batch, bool) or not isinstance(cuda_graph_max_batch, int) or cuda_graph_max_batch < 0
    ):
        raise ArchscaleInputError(f"CUDA-graph max batch must be a non-negative integer, got {cuda_graph_max_batch!r}")
    kv_dtype_bytes = arch.dtype_bytes if kv_dtype_bytes is None else kv_dtype_bytes
    if kv_dtype_bytes not in (1, 2, 4):
        raise ArchscaleInputError(
            f"KV-cache dtype must be 1, 2 or 4 bytes wide (fp8, bf16/fp16, fp32), got {kv_dtype_bytes!r}"
        )
    check_tp(arch, tp, dp)
    calibration = get_calibration(gpu, engine, calibration_file, engine_version)
    policy = {name: getattr(calibration, name) for name in POLICY_FIELDS}
    policy |= {
        name: value
        for name, value in (
            ("max_prefill_tokens", max_prefill_tokens),
            ("max_num_seqs", max_num_seqs),
            ("cuda_graph_max_batch", cuda_graph_max_batch),
        )
        if value is not None
    }
    source = calibration_source(gpu, engine, calibration_file)
    e = estimate(
        ArchBatch.from_archs([arch]),
        gpu,
        batch_size=batch_size,
        input_len=input_len,
        output_len=output_len,
        calibration=calibration,
        kv_dtype_bytes=kv_dtype_bytes,
        max_prefill_tokens=max_prefill_tokens,
        max_num_seqs=max_num_seqs,
        tp=tp,
        dp=dp,
        cuda_graph_max_batch=cuda_graph_max_batch,
    )
    if not e.feasible[0]:
        usable_bytes = gpu.memory_bytes * calibration.gpu_memory_utilization - calibration.workspace_bytes
        label = arch.name or "the model"
        shard_bytes = float(e.weight_bytes[0])
        if shard_bytes >= usable_bytes:
            what = f"{label}'s weights" if tp == 1 else f"one GPU's shard of {label} at --tp {tp}"
            hint = "" if tp > 1 else "; a larger --tp splits them"
            raise ArchscaleInputError(
                f"{what} ({shard_bytes / GiB:.1f} GiB) do not fit in {gpu.display_name}'s usable memory "
                f"({usable_bytes / GiB:.1f} GiB at {calibration.gpu_memory_utilization:.0%} minus workspace){hint}"
            )
        raise ArchscaleInputError(
            f"not even one sequence of {input_len + output_len} tokens fits next to {label}'s weights on "
            f"{gpu.display_name} (needs {float(e.kv_bytes_per_token[0]) * (input_len + output_len) / GiB:.1f} GiB "
            "of KV cache)"
        )
    scalars = {
        name: getattr(e, name)[0].item() for name in SCALAR_FIELDS if name not in ("prefill_bound", "decode_bound")
    }
    for name in ("peak_memory_bytes", "weight_bytes", "kv_bytes_per_token"):
        scalars[name] = int(scalars[name])
    return Prediction(
        arch=arch, gpu=gpu, engine=engine, batch_size=batch_size, input_len=input_len, output_len=output_len,
        kv_dtype_bytes=kv_dtype_bytes, tp=tp, dp=dp, calibrated=calibration.calibrated, calibration_source=source,
        prefill_bound="compute" if e.prefill_compute_bound[0] else "memory",
        decode_bound="compute" if e.decode_compute_bound[0] else "memory",
        prefill_op_time_s={op: float(t[0]) for op, t in e.prefill_op_time_s.items()},
        decode_op_time_s={op: float(t[0]) for op, t in e.decode_op_time_s.items()},
        op_classes=dict(e.op_classes), engine_version=engine_version, engine_policy=policy,
        **scalars,
    )  # fmt: skip
