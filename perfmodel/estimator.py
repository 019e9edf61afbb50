"""I_N(P): roofline + KV-cache I/O estimate of serving throughput, vectorized over architectures × workloads.

Roofline per operator (operators.py): time = max(FLOPs / (peak·compute_eff), bytes / (bw·memory_eff))
+ kernels · launch_overhead; a forward pass adds the engine's step overhead. A GEMM of M rows (tokens) reaches
only M / (M + M½) of the compute efficiency (M½ = `gemm_half_efficiency_tokens`, 0 in the priors: off): tiles and
vector units are filled by rows, so small-M GEMMs (decode at small batch) fall short of the peak even where the
roofline calls them compute-bound. GEMMs of M <= `gemv_max_tokens` rows (0 = off) run as GEMV kernels instead:
memory-bound at `gemv_memory_efficiency`, without that penalty (BLAS libraries dispatch M = 1 to GEMV). The op is compute-bound when the
first term wins. peak = `Hardware.peak_flops_per_s(dtype_bytes)`: fp32 for 4-byte architectures, bf16 otherwise.

Workload: `batch_size` requests, each `input_len` prompt tokens and `output_len` generated tokens.
- Memory: KV capacity = memory·gpu_memory_utilization − weights − workspace. One sequence needs
  kv_bytes_per_token·(input_len + output_len). At most `max_concurrent_seqs` = floor(capacity / that) run at
  once; a larger batch runs in waves of that many (as a paged engine admits requests), `capacity_limited`.
- A wave of c sequences: one prefill forward over c·input_len tokens (TTFT), then output_len − 1 decode steps
  (the prefill already yields the first token) with the KV length growing by one per step. Only attention
  depends on the KV length, affinely, so the sum over steps is exact in closed form (`sum_max_affine`): no
  per-token loop.
- output tokens/s = batch_size·output_len / total time; total tokens/s counts the prompt tokens too.
  TPOT = mean decode step time of a full wave.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfmodel.arch_batch import ArchBatch
from perfmodel.calibration import Calibration
from perfmodel.hardware import Hardware
from perfmodel.operators import decode_attention, dense_ops, prefill_attention


def sum_max_affine(first, count, a1, b1, a2, b2):
    """Σ_{l=first}^{first+count-1} max(a1·l + b1, a2·l + b2) in closed form, and the part of it where the first
    line wins. Broadcasts over all arguments."""
    first, count = np.asarray(first, dtype=np.float64), np.asarray(count, dtype=np.float64)
    last = first + count - 1
    slope_gap, offset_gap = np.subtract(a1, a2), np.subtract(b1, b2)  # line1 - line2 = slope_gap·l + offset_gap
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        crossing = -offset_gap / slope_gap
    # Number of integer l in [first, last] where line 1 is at least line 2.
    rising = np.clip(last - np.ceil(crossing) + 1, 0, count)  # slope_gap > 0: l >= crossing
    falling = np.clip(np.floor(crossing) - first + 1, 0, count)  # slope_gap < 0: l <= crossing
    flat = np.where(offset_gap >= 0, count, 0.0)
    n1 = np.where(slope_gap > 0, rising, np.where(slope_gap < 0, falling, flat))
    n1 = np.nan_to_num(n1, nan=0.0)
    # Line 1 wins on a contiguous run: the top of the range when rising, the bottom otherwise.
    start1 = np.where(slope_gap > 0, last - n1 + 1, first)
    start2 = np.where(slope_gap > 0, first, first + n1)

    def series(a, b, start, n):  # Σ_{k<n} a·(start+k) + b
        return a * (n * start + n * (n - 1) / 2) + b * n

    part1 = series(a1, b1, start1, n1)
    return part1 + series(a2, b2, start2, count - n1), part1


@dataclass
class Estimate:
    """Arrays broadcast to the common shape of the architectures and workloads."""

    output_tokens_per_s: np.ndarray
    total_tokens_per_s: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    prefill_time_s: np.ndarray  # one full wave
    decode_time_s: np.ndarray  # one full wave
    total_time_s: np.ndarray
    peak_memory_bytes: np.ndarray
    weight_bytes: np.ndarray
    max_concurrent_seqs: np.ndarray
    concurrency: np.ndarray
    capacity_limited: np.ndarray
    feasible: np.ndarray
    prefill_compute_bound: np.ndarray
    decode_compute_bound: np.ndarray
    prefill_op_time_s: dict  # op name -> array, one full wave
    decode_op_time_s: dict  # op name -> array, all decode steps of one full wave


def _roofline(flops, bytes_, kernels, gpu: Hardware, cal: Calibration, peak_flops_per_s, gemm_rows=None):
    compute_s = flops / (peak_flops_per_s * cal.compute_efficiency)
    memory_s = bytes_ / (gpu.hbm_bandwidth_bytes_per_s * cal.memory_efficiency)
    if gemm_rows is not None and cal.gemm_half_efficiency_tokens:  # a GEMM of M rows runs at M / (M + M½) of it
        compute_s = compute_s * (1.0 + cal.gemm_half_efficiency_tokens / gemm_rows)
    if gemm_rows is not None and cal.gemv_max_tokens:  # a GEMV streams the weights at its own efficiency
        gemv = np.asarray(gemm_rows) <= cal.gemv_max_tokens
        compute_s = np.where(gemv, flops / (peak_flops_per_s * cal.compute_efficiency), compute_s)
        memory_s = np.where(gemv, bytes_ / (gpu.hbm_bandwidth_bytes_per_s * cal.gemv_memory_efficiency), memory_s)
    return np.maximum(compute_s, memory_s) + kernels * cal.kernel_launch_overhead_s, compute_s >= memory_s


def _wave(shape, n_seqs, input_len, output_len, gpu: Hardware, cal: Calibration, peak_flops_per_s):
    """Times of one wave of `n_seqs` sequences: prefill ops, decode ops summed over steps, and bound shares.
    `peak_flops_per_s` is the hardware's peak for each architecture's dtype (a float or an array)."""
    flop_rate = peak_flops_per_s * cal.compute_efficiency
    byte_rate = gpu.hbm_bandwidth_bytes_per_s * cal.memory_efficiency
    steps = output_len - 1
    prefill, decode = {}, {}
    prefill_compute_s = decode_compute_s = 0.0
    for name, op in dense_ops(shape, n_seqs * input_len, n_seqs).items():
        prefill[name], compute_bound = _roofline(op.flops, op.bytes, op.kernels, gpu, cal, peak_flops_per_s,
                                                 op.gemm_rows)  # fmt: skip
        prefill_compute_s = prefill_compute_s + np.where(compute_bound, prefill[name], 0.0)
    attn = prefill_attention(shape, n_seqs, input_len)
    prefill["attention"], compute_bound = _roofline(attn.flops, attn.bytes, attn.kernels, gpu, cal, peak_flops_per_s)
    prefill_compute_s = prefill_compute_s + np.where(compute_bound, prefill["attention"], 0.0)

    for name, op in dense_ops(shape, n_seqs, n_seqs).items():
        step_s, compute_bound = _roofline(op.flops, op.bytes, op.kernels, gpu, cal, peak_flops_per_s, op.gemm_rows)
        decode[name] = steps * step_s
        decode_compute_s = decode_compute_s + np.where(compute_bound, decode[name], 0.0)
    attn = decode_attention(shape, n_seqs)
    # KV length at decode step k (k = 0 .. steps-1) is input_len + 1 + k: the prompt plus the tokens so far.
    attn_s, attn_compute_s = sum_max_affine(
        input_len + 1,
        steps,
        attn.flops_per_kv / flop_rate,
        0.0,
        attn.bytes_per_kv / byte_rate,
        attn.bytes_fixed / byte_rate,
    )
    decode["attention"] = attn_s + steps * attn.kernels * cal.kernel_launch_overhead_s
    decode_compute_s = decode_compute_s + attn_compute_s
    prefill_s = sum(prefill.values()) + cal.step_overhead_s
    decode_s = sum(decode.values()) + steps * cal.step_overhead_s
    return prefill, decode, prefill_s, decode_s, prefill_compute_s, decode_compute_s


def estimate(
    archs: ArchBatch,
    gpu: Hardware,
    *,
    batch_size,
    input_len,
    output_len,
    calibration: Calibration,
) -> Estimate:
    """Throughput, latency and memory for every (architecture, workload) combination, as arrays."""
    batch_size = np.asarray(batch_size, dtype=np.int64)
    input_len = np.asarray(input_len, dtype=np.int64)
    output_len = np.asarray(output_len, dtype=np.int64)
    cal = calibration
    weight_bytes = archs.weight_bytes.astype(np.float64)
    seq_kv_bytes = archs.kv_bytes_per_token * (input_len + output_len).astype(np.float64)
    kv_capacity_bytes = gpu.memory_bytes * cal.gpu_memory_utilization - weight_bytes - cal.workspace_bytes
    max_concurrent = np.floor(np.maximum(kv_capacity_bytes, 0.0) / seq_kv_bytes)
    feasible = max_concurrent >= 1
    concurrency = np.maximum(np.minimum(batch_size, max_concurrent), 1.0)  # 1 keeps the math finite
    full_waves = np.floor(batch_size / concurrency)
    remainder = batch_size - full_waves * concurrency

    peak_flops_per_s = gpu.peak_flops_per_s(archs.dtype_bytes)  # fp32 or bf16 peak per architecture
    prefill_ops, decode_ops, prefill_s, decode_s, prefill_c, decode_c = _wave(
        archs, concurrency, input_len, output_len, gpu, cal, peak_flops_per_s
    )
    total_s = full_waves * (prefill_s + decode_s)
    if np.any(remainder > 0):  # a last, partial wave (only when the batch exceeds the KV capacity)
        _, _, last_prefill_s, last_decode_s, _, _ = _wave(
            archs, np.maximum(remainder, 1.0), input_len, output_len, gpu, cal, peak_flops_per_s
        )
        total_s = total_s + np.where(remainder > 0, last_prefill_s + last_decode_s, 0.0)
    steps = np.maximum(output_len - 1, 1)
    shape = np.broadcast_shapes(np.shape(total_s), np.shape(max_concurrent))  # every field gets the full shape
    feasible, max_concurrent = np.broadcast_to(feasible, shape), np.broadcast_to(max_concurrent, shape)

    def masked(values):
        return np.where(feasible, values, np.nan)

    return Estimate(
        output_tokens_per_s=masked(batch_size * output_len / total_s),
        total_tokens_per_s=masked(batch_size * (input_len + output_len) / total_s),
        ttft_s=masked(prefill_s),
        tpot_s=masked(np.where(output_len > 1, decode_s / steps, 0.0)),
        prefill_time_s=masked(prefill_s),
        decode_time_s=masked(decode_s),
        total_time_s=masked(total_s),
        peak_memory_bytes=weight_bytes + cal.workspace_bytes + np.where(feasible, concurrency, 0) * seq_kv_bytes,
        weight_bytes=weight_bytes * np.ones_like(total_s),
        max_concurrent_seqs=max_concurrent.astype(np.int64),
        concurrency=np.where(feasible, concurrency, 0).astype(np.int64),
        capacity_limited=feasible & (batch_size > max_concurrent),
        feasible=feasible,
        prefill_compute_bound=prefill_c > (prefill_s - cal.step_overhead_s) / 2,
        decode_compute_bound=decode_c > (decode_s - steps * cal.step_overhead_s) / 2,
        prefill_op_time_s={k: masked(v) for k, v in prefill_ops.items()},
        decode_op_time_s={k: masked(v) for k, v in decode_ops.items()},
    )
