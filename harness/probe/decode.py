"""What a decode step costs on this machine, measured the way our engine runs it: the probe's decode priors.

- `engine_overheads`: our engine's own decode step (harness.engines, the CUDA graph included on a GPU) on two tiny
  models whose FLOPs and bytes are negligible, one 2 and one 8 layers deep. A step costs step_overhead + launches ×
  per-launch overhead, with the launches counted as the perfmodel counts them (perfmodel.operators), so the two
  depths give both overheads as the perfmodel uses them, Python dispatch of an eager step included.
- `decode_attention`: the same decode step on a small model with many KV heads after a short and a long prompt: the
  rate at which the engine's decode attention reads the KV cache (the `attention_decode_memory_efficiency` prior; on
  the CPU the torch path gathers and copies pages, far from a plain stream).
- `weight_streaming`: `F.linear` of M = 1, 2, 4, 8, 16 rows against one weight matrix larger than the caches: the
  bandwidth a decode step reads weights at (M = 1) and the GEMM memory efficiency prior (M = 16).
- `gemm_curve_times`: the GEMMs of a whole model (q/k/v, o, the MLP with its SiLU·mul, the LM head; every layer its
  own weights, as our engine lays them out) at M = 1, 2, 4, ... rows up to a prefill-sized M: the measured GEMM
  curve. BLAS libraries switch kernels with M and with the matrix shape (a GEMV for M = 1; on one CPU M = 2 and 4
  cost 2× and 4× M = 1 on a [16384, 4096] weight but M = 4 costs what M = 2 does on a small model's layers), so the
  curve is measured on a model's own shapes rather than one large matrix. `gemm_curve` turns the times into the
  perfmodel's GEMM factor by rows (perfmodel.calibration `gemm_curve_rows` / `gemm_curve_factors`): the roofline
  time of the same GEMM operators (perfmodel.operators) over the measured time.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from harness.sweep.machine_reference import ReferenceTimes, measure_reference

TINY_DEPTHS = (2, 8)
STREAM_ROWS = (1, 2, 4, 8, 16)
SMALL_GEMM_ROWS = 16  # the M whose streaming rate is the probe's GEMM memory efficiency
STREAM_K = 4096  # the streamed weight is [N, K] = [weight_bytes / (K·elem), 4096]
GEMM_OPS = ("qkv_proj", "o_proj", "mlp", "lm_head")  # perfmodel.operators' GEMM operators, as the curve times them
DECODE_STEPS = 24


@dataclass
class EngineOverheads:
    launch_overhead_s: float  # per kernel launch the perfmodel counts
    step_overhead_s: float  # per forward step
    step_s_by_depth: dict[int, float]  # median decode step seconds of each tiny model


@dataclass
class WeightStreaming:
    weight_bytes: int  # of the streamed matrix
    stream_time_s: dict[int, float]  # M -> median seconds of one F.linear, M in STREAM_ROWS

    @property
    def gemv_bandwidth_bytes_per_s(self) -> float:  # M = 1: weight bytes read per second
        return self.weight_bytes / self.stream_time_s[1]

    @property
    def small_gemm_bandwidth_bytes_per_s(self) -> float:  # M = SMALL_GEMM_ROWS
        return self.weight_bytes / self.stream_time_s[SMALL_GEMM_ROWS]


@dataclass
class GemmCurveTimes:
    arch: object  # perfmodel.Arch whose GEMMs were timed, at the probe's dtype
    weight_bytes: int  # all its GEMM weights (every layer's and the LM head)
    time_s: dict[int, float]  # M -> median seconds of one pass over every GEMM at M rows, M = 1, 2, 4, ...
    skipped_rows: list[int]  # larger M left out because one pass was too slow
    sample_time_s: list[dict[int, float]] = field(default_factory=list)  # each sample's time_s, when several
    sample_references: list[ReferenceTimes] = field(default_factory=list)  # the machine reference around each

    @classmethod
    def median_of(cls, samples: list[GemmCurveTimes]) -> GemmCurveTimes:
        """One curve from samples of it taken at different times: at each M every sample measured, the median of
        their times (M a slow sample left out is left out of the whole curve)."""
        rows = sorted(set.intersection(*(set(s.time_s) for s in samples)))
        skipped = sorted({m for s in samples for m in [*s.time_s, *s.skipped_rows]} - set(rows))
        first = samples[0]
        return cls(first.arch, first.weight_bytes, {m: statistics.median(s.time_s[m] for s in samples) for m in rows},
                   skipped, [{m: s.time_s[m] for m in rows} for s in samples],
                   [r for s in samples for r in s.sample_references])  # fmt: skip

    def spread_pct(self) -> dict[int, float]:
        """M -> (slowest − fastest sample) / median, in %: how far the curve moved while the probe ran."""
        samples = self.sample_time_s or [self.time_s]
        return {m: 100 * (max(s[m] for s in samples) - min(s[m] for s in samples)) / t for m, t in self.time_s.items()}

    def median_uncertainty_pct(self) -> dict[int, float]:
        """M -> standard error of the median time over the samples, in % of it: 1.2533 · σ / √n, σ estimated robustly
        as 1.4826 · the median absolute deviation (normal-consistent), so one far-off sample does not inflate it. 0
        for one sample (nothing to estimate it from: `spread_pct` says so too)."""
        samples = self.sample_time_s or [self.time_s]
        root_n = math.sqrt(len(samples))
        return {m: 100 * MEDIAN_STANDARD_ERROR * MAD_TO_SIGMA * statistics.median(abs(s[m] - t) for s in samples)
                / root_n / t for m, t in self.time_s.items()}  # fmt: skip


MEDIAN_STANDARD_ERROR = math.sqrt(math.pi / 2)  # the median's standard error over the mean's, normal samples
MAD_TO_SIGMA = 1.4826  # σ over the median absolute deviation, normal samples


def sample_until_settled(take_sample, samples: list[GemmCurveTimes], max_samples: int,
                         settled_pct: float) -> GemmCurveTimes:  # fmt: skip
    """The median curve of `samples`, after `take_sample()` (which appends one more) has run until the median's
    uncertainty is at most `settled_pct` at every M or `max_samples` are in: a machine that drifts while it is
    probed gets more samples, so that each M's median comes from the machine's typical state rather than from
    whichever of three samples a passing slowdown left in the middle (a curve whose M = 1 sample caught a slow
    spell and whose M = 8 did not has the wrong shape, which no calibration of its level mends)."""
    curve = GemmCurveTimes.median_of(samples)
    while len(samples) < max_samples and max(curve.median_uncertainty_pct().values()) > settled_pct:
        take_sample()
        curve = GemmCurveTimes.median_of(samples)
    return curve


def one_gpu_shape(arch):
    """`arch` as the perfmodel's operators take it: an ArchBatch of one, unsharded (arrays of shape [1])."""
    from perfmodel.arch_batch import ArchBatch
    from perfmodel.parallel import shard

    return shard(ArchBatch.from_archs([arch]), 1)


def gemm_roofline_s(arch, rows, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> np.ndarray:
    """The perfmodel's roofline time of `arch`'s GEMM operators at `rows` tokens, each token through the LM head as
    in decode (compute efficiency 1, `bandwidth_bytes_per_s` already at the memory efficiency), summed over the
    operators: what `gemm_curve_times` measures."""
    from perfmodel.operators import dense_ops

    tokens = np.asarray(rows, dtype=float)
    ops = dense_ops(one_gpu_shape(arch), tokens, tokens, 1.0)
    return sum(gemm_ops_roofline_s(ops, peak_flops_per_s, bandwidth_bytes_per_s).values()).reshape(tokens.shape)


def gemm_ops_roofline_s(ops, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> dict:
    """Each GEMM operator's (GEMM_OPS of perfmodel.operators.dense_ops `ops`) roofline time: its FLOPs at the peak
    or its bytes at `bandwidth_bytes_per_s` (already at the memory efficiency), whichever is longer."""
    return {name: np.maximum(ops[name].flops / peak_flops_per_s, ops[name].bytes / bandwidth_bytes_per_s)
            for name in GEMM_OPS}  # fmt: skip


def gemm_curve(times: GemmCurveTimes, peak_flops_per_s: float, bandwidth_bytes_per_s: float,
               memory_efficiency: float) -> tuple[list[float], list[float]]:  # fmt: skip
    """(rows, factors) of the perfmodel's measured GEMM curve: at each measured M, the roofline time of the timed
    GEMMs at the priors (peak at compute efficiency 1, bandwidth at `memory_efficiency`) over the measured time, so
    the priors predict the probe's own pass exactly; > 1 where the kernels beat that roofline (GEMV), < 1 where they
    fall short (small tiles)."""
    rows = sorted(times.time_s)
    roofline = gemm_roofline_s(times.arch, rows, peak_flops_per_s, bandwidth_bytes_per_s * memory_efficiency)
    return [float(m) for m in rows], [float(r / times.time_s[m]) for m, r in zip(rows, roofline, strict=True)]


def _tiny_arch(n_layer: int):
    from perfmodel.arch import Arch

    return Arch(d_model=64, n_layer=n_layer, n_head=4, n_kv_head=2, d_head=16, d_ff=128, vocab=64,
                name=f"probe-tiny-{n_layer}")  # fmt: skip


def perfmodel_launches_per_step(arch, sampler_logit_passes: float = 1.0) -> int:
    """Kernel launches the perfmodel charges one decode step of `arch` (dense operators, sampler, attention)."""
    from perfmodel.operators import decode_attention, dense_ops

    shape = one_gpu_shape(arch)
    ops = dense_ops(shape, 1, 1, sampler_logit_passes)
    launches = sum(op.kernels for op in ops.values()) + decode_attention(shape, 1, shape.dtype_bytes).kernels
    return int(launches.item() if hasattr(launches, "item") else launches)


def decode_step_s(arch, batch: int, input_len: int, device: str, dtype: str, runs: int = 3) -> float:
    """Median seconds of our engine's decode step (harness.engines: the CUDA graph and Triton attention on a GPU,
    torch attention on the CPU) for `batch` sequences of `arch` decoding after an `input_len`-token prompt."""
    import torch

    from harness.engines.base import EngineOptions, Workload
    from harness.engines.llama import TORCH_DTYPES, LlamaModel, LlamaWeights, PagedKVCache
    from harness.engines.torch_engine import WaveRunner

    options = EngineOptions(device=device, dtype=dtype, attention="triton" if device == "cuda" else "torch")
    workload = Workload(batch_size=batch, input_len=input_len, output_len=DECODE_STEPS + 1)
    with torch.inference_mode():
        weights = LlamaWeights.random(arch, TORCH_DTYPES[dtype], device)
        pages = -(-(workload.input_len + workload.output_len) // options.block_size)
        cache = PagedKVCache(arch, batch * pages, options.block_size, TORCH_DTYPES[dtype], device)
        runner = WaveRunner(LlamaModel(arch, weights, attention=options.attention), cache, batch, pages, workload,
                            options)  # fmt: skip
        prompt = torch.zeros(batch, workload.input_len, dtype=torch.long, device=device)
        runner.serve(prompt)  # warm-up (and CUDA-graph capture)
        return statistics.median(s for _ in range(runs) for s in runner.serve(prompt).step_s)


OVERHEAD_ATTEMPTS = 3  # how often the two depths are measured again while the deeper one does not come out slower


def engine_overheads(device: str, dtype: str) -> EngineOverheads:
    """Per-launch and per-step overhead of our engine's decode step, from two tiny models of different depth. On a
    busy machine the deeper model can come out no slower than the shallow one, which says nothing of the launch cost:
    then both are measured again (OVERHEAD_ATTEMPTS in all) before the difference is taken, 0 at the least."""
    (shallow, deep), launches = TINY_DEPTHS, [perfmodel_launches_per_step(_tiny_arch(d)) for d in TINY_DEPTHS]
    for _ in range(OVERHEAD_ATTEMPTS):
        step_s = {depth: decode_step_s(_tiny_arch(depth), 1, 16, device, dtype) for depth in TINY_DEPTHS}
        if step_s[deep] > step_s[shallow]:
            break
    launch_s = max((step_s[deep] - step_s[shallow]) / (launches[1] - launches[0]), 0.0)
    return EngineOverheads(float(launch_s), float(max(step_s[shallow] - launches[0] * launch_s, 0.0)), step_s)


@dataclass
class DecodeAttention:
    arch: object  # perfmodel.Arch of the KV-heavy model decoded
    batch: int
    kv_lens: tuple[int, int]  # the two prompt lengths decoded after
    step_s: tuple[float, float]  # median decode step at each
    kv_bytes_per_step: float  # the extra KV cache bytes the longer context reads per step (perfmodel.operators)

    def bandwidth_bytes_per_s(self) -> float:
        """The rate at which the engine's decode attention reads the extra KV cache of the longer context."""
        return self.kv_bytes_per_step / max(self.step_s[1] - self.step_s[0], 1e-12)


def decode_attention(device: str, dtype: str, batch: int, kv_lens: tuple[int, int]) -> DecodeAttention:
    """Our engine's decode step on a small model with many KV heads (its KV cache outweighs its weights) after two
    prompt lengths: the difference of the steps is the decode attention's cost of the extra context, the rest of the
    step being the same at both."""
    from perfmodel.arch import DTYPE_BYTES, Arch
    from perfmodel.operators import decode_attention as attention_op

    element_bytes = DTYPE_BYTES[dtype]
    arch = Arch(d_model=256, n_layer=2, n_head=8, n_kv_head=8, d_head=64, d_ff=512, vocab=512,
                dtype_bytes=element_bytes, name="probe-kv-heavy")  # fmt: skip
    step_s = tuple(decode_step_s(arch, batch, kv_len, device, dtype) for kv_len in kv_lens)
    per_kv = attention_op(one_gpu_shape(arch), batch, element_bytes).bytes_per_kv
    kv_bytes = float(np.asarray(per_kv).item() * (kv_lens[1] - kv_lens[0]))
    return DecodeAttention(arch, batch, tuple(kv_lens), step_s, kv_bytes)


def weight_streaming(timer, device: str, dtype, weight_bytes: int) -> WeightStreaming:
    """Median seconds of F.linear of M rows (M in STREAM_ROWS) against a [weight_bytes / (4096·elem), 4096] weight."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the torch convention)

    elem = torch.tensor([], dtype=dtype).element_size()
    n = max(weight_bytes // (STREAM_K * elem), 1)
    weight = torch.randn(n, STREAM_K, device=device).to(dtype)  # [N, K]
    times = {}
    for rows in STREAM_ROWS:
        x = torch.randn(rows, STREAM_K, device=device).to(dtype)  # [M, K]
        times[rows] = timer.kernel_s(lambda x=x: F.linear(x, weight))[0]
    return WeightStreaming(weight_bytes=n * STREAM_K * elem, stream_time_s=times)


def replayable(torch, device: str, fn):
    """`fn` as the engine runs a decode step: on a GPU captured once in a CUDA graph and replayed (so the curve holds
    the kernels, not their launches, which the perfmodel charges apart), on the CPU as it is."""
    if device != "cuda":
        return fn
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capturing stream, as torch.cuda.graph asks
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def gemm_curve_times(timer, device: str, dtype, arch, max_rows: int, max_call_s: float) -> GemmCurveTimes:
    """Median seconds of one pass over every GEMM of `arch` (random weights in our engine's layout) at M = 1, 2, 4,
    ... `max_rows` rows, the machine reference (harness/sweep/machine_reference.py) timed before and after; a larger M is
    left out once one pass takes longer than `max_call_s` (never below SMALL_GEMM_ROWS). On the CPU a pass includes
    each op's dispatch (a few µs per GEMM against milliseconds of weight reads)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the torch convention)

    from harness.engines.llama import LlamaModel, LlamaWeights

    weights = LlamaWeights.random(arch, dtype, device)
    layers, lm_head = weights.layers, weights.lm_head

    def one_pass(x, x_o):  # x [M, d], x_o [M, hq·dh]; the engine's GEMMs in its order, without attention between
        for layer in layers:
            F.linear(x, layer.wqkv)  # [M, (hq + 2·hkv)·dh]
            F.linear(x_o, layer.wo)  # [M, d]
            LlamaModel._mlp(layer, x)  # [M, d]
        F.linear(x, lm_head)  # [M, V]

    all_rows = [2**i for i in range(max_rows.bit_length())]
    times, skipped, reference_before = {}, [], measure_reference(device)
    for i, rows in enumerate(all_rows):
        x = torch.randn(rows, arch.d_model, device=device).to(dtype)  # [M, d]
        x_o = torch.randn(rows, arch.n_head * arch.d_head, device=device).to(dtype)  # [M, hq·dh]
        times[rows] = timer.kernel_s(replayable(torch, device, lambda x=x, x_o=x_o: one_pass(x, x_o)))[0]
        if times[rows] > max_call_s and rows >= SMALL_GEMM_ROWS:
            skipped = all_rows[i + 1 :]
            break
    matrices = [lm_head, *(t for layer in layers for t in (layer.wqkv, layer.wo, layer.w_gate_up, layer.w_down))]
    weight_bytes = sum(t.numel() * t.element_size() for t in matrices)
    reference = reference_before.mean_with(measure_reference(device))
    return GemmCurveTimes(arch, int(weight_bytes), times, skipped, [dict(times)], [reference])
