"""What a decode step costs on this machine, measured the way our engine runs it: the probe's decode priors.

- `engine_overheads`: our engine's own decode step (harness.engines, the CUDA graph included on a GPU) on two tiny
  models whose FLOPs and bytes are negligible, one 2 and one 8 layers deep. A step costs step_overhead + launches ×
  per-launch overhead, with the launches counted as the perfmodel counts them (perfmodel.operators), so the two
  depths give both overheads as the perfmodel uses them, Python dispatch of an eager step included.
- `weight_streaming`: `F.linear` of M rows against a weight matrix larger than the caches, for M = 1, 2, 4, ... up to
  a compute-bound M: the measured GEMM curve. BLAS libraries switch kernels with M (a GEMV for M = 1, and on some
  CPUs M = 2; tile shapes that fill only at larger M), so the time of a small-M GEMM is a step function no two-number
  model follows: on one CPU M = 4 streams the weight at 60% of the M = 2 rate and M = 8 at 40%, on another M = 1, 2
  and 4 take time proportional to M. `gemm_curve` turns the times into the perfmodel's GEMM factor by rows
  (perfmodel.calibration `gemm_curve_rows` / `gemm_curve_factors`): measured speed over the roofline's.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

TINY_DEPTHS = (2, 8)
SMALL_GEMM_ROWS = 16  # the M whose streaming rate is the probe's GEMM memory efficiency
STREAM_K = 4096  # the streamed weight is [N, K] = [weight_bytes / (K·elem), 4096]
DECODE_STEPS = 24


@dataclass
class EngineOverheads:
    launch_overhead_s: float  # per kernel launch the perfmodel counts
    step_overhead_s: float  # per forward step
    step_s_by_depth: dict[int, float]  # median decode step seconds of each tiny model


@dataclass
class WeightStreaming:
    weight_bytes: int  # of the streamed [n, k] matrix
    k: int
    n: int
    element_bytes: int
    time_s: dict[int, float]  # M -> median seconds of one F.linear of M rows, M = 1, 2, 4, ...
    skipped_rows: list[int]  # larger M left out because one call was too slow

    @property
    def gemv_bandwidth_bytes_per_s(self) -> float:  # M = 1: weight bytes read per second
        return self.weight_bytes / self.time_s[1]

    @property
    def small_gemm_bandwidth_bytes_per_s(self) -> float:  # M = SMALL_GEMM_ROWS
        return self.weight_bytes / self.time_s[SMALL_GEMM_ROWS]

    def roofline_s(self, rows: int, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
        """The perfmodel's roofline time of the F.linear of `rows` rows (perfmodel.operators' GEMM bytes: the weight
        plus the input and output activations)."""
        flops = 2.0 * rows * self.k * self.n
        moved = self.element_bytes * (self.k * self.n + rows * (self.k + self.n))
        return max(flops / peak_flops_per_s, moved / bandwidth_bytes_per_s)


def gemm_curve(streaming: WeightStreaming, peak_flops_per_s: float, bandwidth_bytes_per_s: float,
               memory_efficiency: float) -> tuple[list[float], list[float]]:  # fmt: skip
    """(rows, factors) of the perfmodel's measured GEMM curve: at each measured M, the roofline time at the priors
    (peak at compute efficiency 1, bandwidth at `memory_efficiency`) over the measured time, so the priors predict
    the probe's own F.linear exactly; > 1 where a kernel beats that roofline (GEMV), < 1 where it falls short."""
    rows = sorted(streaming.time_s)
    factors = [streaming.roofline_s(m, peak_flops_per_s, bandwidth_bytes_per_s * memory_efficiency)
               / streaming.time_s[m] for m in rows]  # fmt: skip
    return [float(m) for m in rows], factors


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


def weight_streaming(timer, device: str, dtype, weight_bytes: int, max_rows: int, max_call_s: float) -> WeightStreaming:
    """Median seconds of F.linear of M rows against a `weight_bytes` weight, M = 1, 2, 4, ... `max_rows` (a larger M
    is left out once one call takes longer than `max_call_s`, but never below SMALL_GEMM_ROWS)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the torch convention)

    elem = torch.tensor([], dtype=dtype).element_size()
    n = max(weight_bytes // (STREAM_K * elem), 1)
    weight = torch.randn(n, STREAM_K, device=device).to(dtype)  # [N, K]
    all_rows = [2**i for i in range(max_rows.bit_length()) if 2**i <= max_rows]
    times, skipped = {}, []
    for i, rows in enumerate(all_rows):
        x = torch.randn(rows, STREAM_K, device=device).to(dtype)  # [M, K]
        times[rows] = timer.kernel_s(lambda x=x: F.linear(x, weight))[0]
        if times[rows] > max_call_s and rows >= SMALL_GEMM_ROWS:
            skipped = all_rows[i + 1 :]
            break
    return WeightStreaming(weight_bytes=n * STREAM_K * elem, k=STREAM_K, n=n, element_bytes=elem, time_s=times,
                           skipped_rows=skipped)  # fmt: skip
