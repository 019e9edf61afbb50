"""What a decode step costs on this machine, measured the way our engine runs it: the probe's decode priors.

- `engine_overheads`: our engine's own decode step (harness.engines, the CUDA graph included on a GPU) on two tiny
  models whose FLOPs and bytes are negligible, one 2 and one 8 layers deep. A step costs step_overhead + launches ×
  per-launch overhead, with the launches counted as the perfmodel counts them (perfmodel.operators), so the two
  depths give both overheads as the perfmodel uses them, Python dispatch of an eager step included.
- `weight_streaming`: `F.linear` of M rows against a weight matrix larger than the caches, for M = 1, 2, 4, 8, 16 and
  one compute-bound M. Small M streams the weights: M = 1 (and on some BLAS M = 2 or 4) runs a GEMV kernel, usually
  faster per byte than a small GEMM; the compute-bound M gives the GEMM rows at half efficiency M½ from
  t = 2·M·K·N·(1 + M½/M) / peak.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

TINY_DEPTHS = (2, 8)
STREAM_ROWS = (1, 2, 4, 8, 16)
GEMV_CANDIDATE_ROWS = (1, 2, 4)
GEMV_KEEP = 0.8  # a GEMM of M rows counts as GEMV while it streams the weights at >= 80% of the M = 1 rate
DECODE_STEPS = 24


@dataclass
class EngineOverheads:
    launch_overhead_s: float  # per kernel launch the perfmodel counts
    step_overhead_s: float  # per forward step
    step_s_by_depth: dict[int, float]  # median decode step seconds of each tiny model


@dataclass
class WeightStreaming:
    weight_bytes: int  # of the streamed matrix
    stream_time_s: dict[int, float]  # M -> median seconds of one F.linear
    compute_rows: int
    compute_time_s: float
    gemv_max_tokens: int  # 0 when M = 1 is no faster per byte than a small GEMM
    gemv_bandwidth_bytes_per_s: float
    small_gemm_bandwidth_bytes_per_s: float  # M = 16
    gemm_half_efficiency_tokens: float


def _tiny_arch(n_layer: int):
    from perfmodel.arch import Arch

    return Arch(d_model=64, n_layer=n_layer, n_head=4, n_kv_head=2, d_head=16, d_ff=128, vocab=64,
                name=f"probe-tiny-{n_layer}")  # fmt: skip


def perfmodel_launches_per_step(arch, sampler_logit_passes: float = 1.0) -> int:
    """Kernel launches the perfmodel charges one decode step of `arch` (dense operators, sampler, attention)."""
    from perfmodel.arch_batch import ArchBatch
    from perfmodel.operators import decode_attention, dense_ops
    from perfmodel.parallel import shard

    shape = shard(ArchBatch.from_archs([arch]), 1)  # arrays of shape [1], one GPU
    ops = dense_ops(shape, 1, 1, sampler_logit_passes)
    launches = sum(op.kernels for op in ops.values()) + decode_attention(shape, 1, shape.dtype_bytes).kernels
    return int(launches.item() if hasattr(launches, "item") else launches)


def engine_overheads(device: str, dtype: str) -> EngineOverheads:
    """Per-launch and per-step overhead of our engine's decode step, from two tiny models of different depth."""
    import torch

    from harness.engines.base import EngineOptions, Workload
    from harness.engines.llama import TORCH_DTYPES, LlamaModel, LlamaWeights, PagedKVCache
    from harness.engines.torch_engine import WaveRunner

    options = EngineOptions(device=device, dtype=dtype, attention="triton" if device == "cuda" else "torch")
    workload = Workload(batch_size=1, input_len=16, output_len=DECODE_STEPS + 1)
    step_s = {}
    with torch.inference_mode():
        for depth in TINY_DEPTHS:
            arch = _tiny_arch(depth)
            weights = LlamaWeights.random(arch, TORCH_DTYPES[dtype], device)
            pages = -(-(workload.input_len + workload.output_len) // options.block_size)
            cache = PagedKVCache(arch, pages, options.block_size, TORCH_DTYPES[dtype], device)
            runner = WaveRunner(LlamaModel(arch, weights, attention=options.attention), cache, 1, pages, workload,
                                options)  # fmt: skip
            prompt = torch.zeros(1, workload.input_len, dtype=torch.long, device=device)
            runner.serve(prompt)  # warm-up (and CUDA-graph capture)
            step_s[depth] = statistics.median(s for _ in range(3) for s in runner.serve(prompt).step_s)
    (shallow, deep), launches = TINY_DEPTHS, [perfmodel_launches_per_step(_tiny_arch(d)) for d in TINY_DEPTHS]
    launch_s = max((step_s[deep] - step_s[shallow]) / (launches[1] - launches[0]), 0.0)
    return EngineOverheads(float(launch_s), float(max(step_s[shallow] - launches[0] * launch_s, 0.0)), step_s)


def weight_streaming(timer, device: str, dtype, peak_flops_per_s: float, weight_bytes: int,
                     compute_rows: int) -> WeightStreaming:  # fmt: skip
    """Median seconds of F.linear over M rows for M in STREAM_ROWS and `compute_rows`, and what they imply."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the torch convention)

    elem = torch.tensor([], dtype=dtype).element_size()
    k = 4096
    n = max(weight_bytes // (k * elem), 1)
    weight = torch.randn(n, k, device=device).to(dtype)  # [N, K]
    times = {}
    for rows in (*STREAM_ROWS, compute_rows):
        x = torch.randn(rows, k, device=device).to(dtype)  # [M, K]
        times[rows] = timer.kernel_s(lambda x=x: F.linear(x, weight))[0]
    stream_bytes = n * k * elem
    rate = {rows: stream_bytes / times[rows] for rows in STREAM_ROWS}
    gemv_rows = [m for m in GEMV_CANDIDATE_ROWS if rate[m] >= GEMV_KEEP * rate[1]]
    gemv_max = max(gemv_rows) if rate[1] > rate[16] / GEMV_KEEP else 0  # a GEMV regime only if M = 1 is faster
    flops = 2.0 * compute_rows * k * n
    half = compute_rows * (times[compute_rows] * peak_flops_per_s / flops - 1.0)
    return WeightStreaming(
        weight_bytes=stream_bytes, stream_time_s={m: times[m] for m in STREAM_ROWS}, compute_rows=compute_rows,
        compute_time_s=times[compute_rows], gemv_max_tokens=gemv_max, gemv_bandwidth_bytes_per_s=rate[1],
        small_gemm_bandwidth_bytes_per_s=rate[16], gemm_half_efficiency_tokens=float(min(max(half, 0.0), 1e4)),
    )  # fmt: skip
