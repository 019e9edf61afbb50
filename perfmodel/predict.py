"""`predict`: the estimate for one architecture and one workload, as a `Prediction` with a JSON-ready dict.

It runs the same vectorized code as the search (a batch of one), so the two never disagree, and it turns
the user-facing failures (weights larger than the GPU, one sequence that does not fit, a dtype whose peak the
hardware entry lacks) into one clear error. The hardware may be a datasheet GPU or a machine measured by
`archscale probe`; its own calibration priors, if any, are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfmodel.arch import Arch
from perfmodel.arch_batch import ArchBatch
from perfmodel.calibration import get_calibration
from perfmodel.errors import ArchscaleInputError
from perfmodel.estimator import Estimate, estimate
from perfmodel.hardware import Hardware

GiB = 2**30


@dataclass(frozen=True)
class Prediction:
    arch: Arch
    gpu: Hardware
    engine: str
    batch_size: int
    input_len: int
    output_len: int
    calibrated: bool
    estimate: Estimate  # arrays of shape (1,)
    calibration_source: str = "perfmodel/data/calibration.toml"

    def __getattr__(self, name):  # prediction.output_tokens_per_s etc. read the estimate's scalar
        value = getattr(self.__dict__["estimate"], name)
        return value[0].item() if hasattr(value, "shape") else value

    def to_dict(self) -> dict:
        e = self.estimate
        return {
            "config": self.arch.name,
            "gpu": self.gpu.name,
            "hardware": self.gpu.display_name,
            "hardware_measured": self.gpu.measured,
            "dtype_bytes": self.arch.dtype_bytes,
            "engine": self.engine,
            "batch_size": self.batch_size,
            "input_len": self.input_len,
            "output_len": self.output_len,
            "output_tokens_per_s": float(e.output_tokens_per_s[0]),
            "total_tokens_per_s": float(e.total_tokens_per_s[0]),
            "ttft_s": float(e.ttft_s[0]),
            "tpot_s": float(e.tpot_s[0]),
            "peak_memory_bytes": int(e.peak_memory_bytes[0]),
            "weight_bytes": int(e.weight_bytes[0]),
            "max_concurrent_seqs": int(e.max_concurrent_seqs[0]),
            "concurrency": int(e.concurrency[0]),
            "capacity_limited": bool(e.capacity_limited[0]),
            "prefill_bound": "compute" if e.prefill_compute_bound[0] else "memory",
            "decode_bound": "compute" if e.decode_compute_bound[0] else "memory",
            "n_params_non_embedding": self.arch.n_params_non_embedding,
            "n_params_total": self.arch.n_params_total,
            "mlp_attn_ratio": self.arch.mlp_attn_ratio,
            "gqa_group": self.arch.gqa_group,
            "kv_bytes_per_token": self.arch.kv_bytes_per_token,
            "calibrated": self.calibrated,
            "calibration_source": self.calibration_source,
            "breakdown": {
                "prefill_s": {op: float(t[0]) for op, t in e.prefill_op_time_s.items()},
                "decode_s": {op: float(t[0]) for op, t in e.decode_op_time_s.items()},
            },
        }


def predict(arch: Arch, gpu: Hardware, *, batch_size: int, input_len: int, output_len: int, engine: str = "torch",
            calibration_file=None):  # fmt: skip
    """`calibration_file`: a file `archscale calibrate` wrote, used instead of the priors (perfmodel.calibration)."""
    for label, value in (("batch size", batch_size), ("input length", input_len), ("output length", output_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArchscaleInputError(f"{label} must be a positive integer, got {value!r}")
    calibration = get_calibration(gpu, engine, calibration_file)
    if calibration_file is not None:
        source = str(calibration_file)
    else:
        source = "hardware entry" if engine in gpu.calibration_priors else "perfmodel/data/calibration.toml"
    result = estimate(
        ArchBatch.from_archs([arch]),
        gpu,
        batch_size=batch_size,
        input_len=input_len,
        output_len=output_len,
        calibration=calibration,
    )
    if not result.feasible[0]:
        usable_bytes = gpu.memory_bytes * calibration.gpu_memory_utilization - calibration.workspace_bytes
        label = arch.name or "the model"
        if arch.weight_bytes >= usable_bytes:
            raise ArchscaleInputError(
                f"{label}'s weights ({arch.weight_bytes / GiB:.1f} GiB) do not fit in {gpu.display_name}'s usable "
                f"memory ({usable_bytes / GiB:.1f} GiB at {calibration.gpu_memory_utilization:.0%} minus workspace)"
            )
        raise ArchscaleInputError(
            f"not even one sequence of {input_len + output_len} tokens fits next to {label}'s weights on "
            f"{gpu.display_name} (needs {arch.kv_bytes_per_token * (input_len + output_len) / GiB:.1f} GiB of KV cache)"
        )
    return Prediction(arch, gpu, engine, batch_size, input_len, output_len, calibration.calibrated, result, source)
