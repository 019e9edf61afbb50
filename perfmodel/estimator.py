"""I_N(P): roofline + KV-cache I/O estimate of serving throughput, vectorized over architectures × workloads.

Roofline per operator (operators.py): time = max(FLOPs / (peak·compute_eff), bytes / (bw·memory_eff))
+ kernels · launch_overhead; a forward pass adds the engine's step overhead. Each operator class has its own
efficiencies (`Calibration.efficiencies`: GEMM, attention prefill, attention decode, elementwise); decode attention's
bandwidth is further scaled by its occupancy (programs vs SMs, perfmodel/occupancy.py). A GEMM of M rows (tokens)
reaches only M / (M + M½) of the compute efficiency (M½ = `gemm_half_efficiency_tokens`, 0 in the priors: off): tiles
and vector units are filled by rows, so small-M GEMMs (decode at small batch) fall short of the peak even where the
roofline calls them compute-bound. GEMMs of M <= `gemv_max_tokens` rows (0 = off) run as GEMV kernels instead:
memory-bound at `gemv_memory_efficiency`, without that penalty (BLAS libraries dispatch M = 1 to GEMV). A machine
`archscale probe` measured carries its own GEMM curve instead of these two terms (`gemm_curve_rows` /
`gemm_curve_factors`: the measured speed over the roofline's at each M, interpolated in log M). The op is
compute-bound when the first term wins. peak = `Hardware.peak_flops_per_s(dtype_bytes)`: fp32 for 4-byte
architectures, fp8 for 1-byte ones where the GPU has an fp8 peak, bf16 otherwise.

Workload: `batch_size` requests, each `input_len` prompt tokens and `output_len` generated tokens, all arriving at
once (an offline run, or a benchmark at infinite request rate).
- Memory: KV capacity = memory·gpu_memory_utilization − weights − workspace, with the device's memory as it reports
  it (GiB-sized HBM less what the driver keeps). One sequence needs kv_bytes_per_token·(input_len + output_len) in
  the KV cache's own dtype (`kv_dtype_bytes`, default the weights'). At most `max_concurrent_seqs` =
  floor(capacity / that) run at once, and no more than the engine's `max_num_seqs` (0: no cap); a larger batch
  runs in waves of that many (as a paged engine admits requests), `capacity_limited`.
- A wave of c sequences: prefill forwards of whole sequences, at most `max_prefill_tokens` prompt tokens each (at
  least one sequence), each sampling the first token of its sequences; then output_len − 1 decode steps with the
  KV length growing by one per step. Only attention depends on the KV length, affinely, so the sum over steps is
  exact in closed form (`sum_max_affine`): no per-token loop.
- TTFT as engines report it: a request's first token is ready when the prefill forward holding it ends; requests in
  a later wave also wait for the waves before them. `ttft_s` is the mean over all requests (closed form), and
  `ttft_p50_s` / `ttft_p99_s` the nearest-rank percentiles. `prefill_time_s` is the prefill of one full wave (all
  its forwards): what calibration fits against a measured wave.
- output tokens/s = batch_size·output_len / total time; total tokens/s counts the prompt tokens too.
  TPOT = mean decode step time of a full wave.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from perfmodel import params
from perfmodel.arch_batch import ArchBatch
from perfmodel.calibration import Calibration
from perfmodel.cuda_graphs import graph_batch
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import Hardware
from perfmodel.occupancy import decode_attention_occupancy
from perfmodel.operators import decode_attention, dense_ops, prefill_attention
from perfmodel.parallel import shard, tp_compatible
from perfmodel.roofline import communication_time, forward_times
from perfmodel.scheduler import continuous_run, engine_schedule


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


def nearest_rank(quantile, count):
    """0-based index of the nearest-rank `quantile` (in (0, 1]) of `count` sorted values: ceil(q·n) − 1."""
    return np.maximum(np.ceil(np.asarray(quantile) * count).astype(np.int64) - 1, 0)


@dataclass
class Estimate:
    """Arrays broadcast to the common shape of the architectures and workloads."""

    output_tokens_per_s: np.ndarray
    total_tokens_per_s: np.ndarray
    ttft_s: np.ndarray  # mean over requests, from the moment all arrive
    ttft_p50_s: np.ndarray  # nearest-rank median over requests
    ttft_p99_s: np.ndarray
    tpot_s: np.ndarray
    prefill_time_s: np.ndarray  # one full wave, all its prefill forwards
    decode_time_s: np.ndarray  # one full wave
    total_time_s: np.ndarray
    peak_memory_bytes: np.ndarray
    weight_bytes: np.ndarray
    kv_bytes_per_token: np.ndarray  # in the KV cache's dtype
    max_concurrent_seqs: np.ndarray
    concurrency: np.ndarray
    capacity_limited: np.ndarray
    feasible: np.ndarray
    prefill_compute_bound: np.ndarray
    decode_compute_bound: np.ndarray
    decode_attention_occupancy: np.ndarray  # share of SMs a full wave's decode attention keeps busy
    prefill_op_time_s: dict  # op name -> array, one full wave
    decode_op_time_s: dict  # op name -> array, all decode steps of one full wave
    op_classes: dict  # op name -> its operator class (Calibration.efficiencies); attention is "attention_<phase>"


@dataclass
class _Wave:
    """Times of one wave of sequences: its prefill forwards (`full_chunks` of `chunk_seqs` sequences taking
    `chunk_s` each, then a last one of the rest taking `last_chunk_s`, 0 if none) and its decode steps."""

    prefill_ops: dict
    decode_ops: dict
    prefill_s: np.ndarray
    decode_s: np.ndarray
    prefill_compute_s: np.ndarray
    decode_compute_s: np.ndarray
    occupancy: np.ndarray
    op_classes: dict
    chunk_seqs: np.ndarray
    full_chunks: np.ndarray
    chunk_s: np.ndarray
    last_chunk_s: np.ndarray

    @property
    def total_s(self):
        return self.prefill_s + self.decode_s

    def first_token_s(self, position):
        """When the request at 0-based `position` of the wave has its first token, from the wave's start."""
        chunk = position // self.chunk_seqs
        done = self.full_chunks * self.chunk_s
        return np.where(chunk < self.full_chunks, (chunk + 1) * self.chunk_s, done + self.last_chunk_s)

    def first_token_sum_s(self, n_seqs):
        """Σ first_token_s over the wave's `n_seqs` requests, in closed form."""
        full, last_seqs = self.full_chunks, n_seqs - self.full_chunks * self.chunk_seqs
        return self.chunk_seqs * self.chunk_s * full * (full + 1) / 2 + last_seqs * (full * self.chunk_s +
                                                                                    self.last_chunk_s)  # fmt: skip


def _wave(shape, n_seqs, input_len, output_len, gpu: Hardware, cal: Calibration, peak_flops_per_s, kv_dtype_bytes,
          max_prefill_tokens, tp) -> _Wave:  # fmt: skip
    """One wave of `n_seqs` sequences on one GPU of a TP group of `tp` (`shape`: that GPU's share).
    `peak_flops_per_s` is the hardware's peak for each architecture's dtype."""
    steps = output_len - 1
    passes = cal.sampler_logit_passes

    def communication(tokens, seqs):
        return communication_time(shape, tokens, seqs, tp, gpu, cal)

    def prefill_forward(seqs):
        ops = dense_ops(shape, seqs * input_len, seqs, passes)
        ops["attention"] = prefill_attention(shape, seqs, input_len, kv_dtype_bytes)
        times, compute_s = forward_times(ops, gpu, cal, peak_flops_per_s)
        times["communication"] = communication(seqs * input_len, seqs)
        return times, compute_s

    per_forward = np.maximum(np.floor(max_prefill_tokens / input_len), 1)  # whole sequences, at least one
    chunk_seqs = np.minimum(per_forward, n_seqs)
    full_chunks = np.floor(n_seqs / chunk_seqs)
    last_seqs = n_seqs - full_chunks * chunk_seqs
    chunk_ops, chunk_compute_s = prefill_forward(chunk_seqs)
    chunk_s = sum(chunk_ops.values()) + cal.step_overhead_s
    prefill = {name: full_chunks * t for name, t in chunk_ops.items()}
    prefill_compute_s = full_chunks * chunk_compute_s
    last_chunk_s = np.zeros_like(chunk_s)
    if np.any(last_seqs > 0):  # a last, smaller forward for the sequences left over
        has_last = last_seqs > 0
        last_ops, last_compute_s = prefill_forward(np.maximum(last_seqs, 1))
        prefill = {name: t + np.where(has_last, last_ops[name], 0.0) for name, t in prefill.items()}
        prefill_compute_s = prefill_compute_s + np.where(has_last, last_compute_s, 0.0)
        last_chunk_s = np.where(has_last, sum(last_ops.values()) + cal.step_overhead_s, 0.0)
    prefill_s = full_chunks * chunk_s + last_chunk_s

    # Each decode step replays the CUDA graph of the next captured batch size (vLLM, SGLang; perfmodel/cuda_graphs.py).
    step_dense_ops = dense_ops(shape, graph_batch(n_seqs, cal.cuda_graph_max_batch), n_seqs, passes)
    op_classes = {name: op.op_class for name, op in step_dense_ops.items()} | {
        "attention": "attention",
        "communication": "communication",
    }
    step_ops, decode_compute_s = forward_times(step_dense_ops, gpu, cal, peak_flops_per_s)
    decode = {name: steps * t for name, t in step_ops.items()}
    decode_compute_s = steps * decode_compute_s
    attn = decode_attention(shape, n_seqs, kv_dtype_bytes)
    occupancy = decode_attention_occupancy(n_seqs, shape.n_kv_head, input_len + output_len, gpu.sm_count)
    compute_eff, memory_eff = cal.efficiencies("attention_decode")
    flop_rate = peak_flops_per_s * compute_eff
    byte_rate = gpu.hbm_bandwidth_bytes_per_s * memory_eff * occupancy
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
    decode["communication"] = steps * communication(n_seqs, n_seqs)
    decode_compute_s = decode_compute_s + attn_compute_s
    decode_s = sum(decode.values()) + steps * cal.step_overhead_s
    return _Wave(prefill, decode, prefill_s, decode_s, prefill_compute_s, decode_compute_s, occupancy, op_classes,
                 chunk_seqs, full_chunks, chunk_s, last_chunk_s)  # fmt: skip


def estimate(
    archs: ArchBatch,
    gpu: Hardware,
    *,
    batch_size,
    input_len,
    output_len,
    calibration: Calibration,
    kv_dtype_bytes=None,
    max_prefill_tokens=None,
    max_num_seqs=None,
    tp: int = 1,
    dp: int = 1,
    cuda_graph_max_batch: int | None = None,
) -> Estimate:
    """Throughput, latency and memory for every (architecture, workload) combination, as arrays.
    `kv_dtype_bytes`: the KV cache's element size (default: each architecture's dtype_bytes); `max_prefill_tokens`:
    prompt tokens per prefill forward and `max_num_seqs`: the engine's cap on running sequences, 0 = none,
    `cuda_graph_max_batch`: its largest CUDA-graph decode batch, 0 = no padding (defaults: the calibration's engine
    policy); `tp`, `dp`: tensor-parallel degree and data-parallel replicas
    (perfmodel/parallel.py). With dp > 1 `batch_size` is the whole batch, split evenly over
    the replicas; throughputs are totals, latencies, memory and concurrency those of one replica (per GPU).
    Architectures whose heads `tp` does not split as vLLM requires come out infeasible (`check_tp` says why)."""
    if tp > 1 and gpu.interconnect_bandwidth_bytes_per_s is None:
        raise ArchscaleInputError(f"{gpu.display_name} has no interconnect figures in its hardware entry "
                                  "(interconnect_bandwidth_bytes_per_s, interconnect_latency_s): cannot model --tp > 1")  # fmt: skip
    total_batch = np.asarray(batch_size, dtype=np.int64)
    batch_size = -(-total_batch // dp)  # the fullest replica
    batch_size = np.asarray(batch_size, dtype=np.int64)
    input_len = np.asarray(input_len, dtype=np.int64)
    output_len = np.asarray(output_len, dtype=np.int64)
    cal = calibration if cuda_graph_max_batch is None else replace(calibration,
                                                                   cuda_graph_max_batch=float(cuda_graph_max_batch))  # fmt: skip
    kv_dtype_bytes = archs.dtype_bytes if kv_dtype_bytes is None else np.asarray(kv_dtype_bytes)
    max_prefill_tokens = cal.max_prefill_tokens if max_prefill_tokens is None else np.asarray(max_prefill_tokens)
    shape = shard(archs, tp)  # one GPU's share; at tp = 1 the architectures themselves
    weight_bytes = shape.weight_bytes.astype(np.float64)
    kv_bytes_per_token = params.kv_bytes_per_token(shape.n_layer, shape.n_kv_head, shape.d_head, kv_dtype_bytes)
    seq_kv_bytes = kv_bytes_per_token * (input_len + output_len).astype(np.float64)
    kv_capacity_bytes = gpu.memory_bytes * cal.gpu_memory_utilization - weight_bytes - cal.workspace_bytes
    max_concurrent = np.floor(np.maximum(kv_capacity_bytes, 0.0) / seq_kv_bytes)
    max_num_seqs = np.asarray(cal.max_num_seqs if max_num_seqs is None else max_num_seqs, dtype=np.float64)
    # The engine's own cap on running sequences (vLLM max_num_seqs), a scalar or one per point; 0 = none.
    max_concurrent = np.where(max_num_seqs > 0, np.minimum(max_concurrent, max_num_seqs), max_concurrent)
    feasible = (max_concurrent >= 1) & tp_compatible(archs, tp)
    concurrency = np.maximum(np.minimum(batch_size, max_concurrent), 1.0)  # 1 keeps the math finite
    full_waves = np.floor(batch_size / concurrency)
    remainder = batch_size - full_waves * concurrency

    peak_flops_per_s = gpu.peak_flops_per_s(archs.dtype_bytes)  # fp32, bf16 or fp8 peak per architecture
    timing = _static_waves(shape, batch_size, concurrency, full_waves, remainder, input_len, output_len, gpu, cal,
                           peak_flops_per_s, kv_dtype_bytes, max_prefill_tokens, tp)  # fmt: skip
    if cal.chunked_prefill:  # continuous batching with chunked prefill (vLLM, SGLang): perfmodel/scheduler.py
        # Where one step admits a whole turn (the turns stay in lockstep) the engine runs the static schedule above;
        # otherwise requests stagger over mixed steps, the first ones decoding while later prompts are still being
        # prefilled. A turn of C prompts is admitted in one step when (C − 1)·I/T' < 1 (I/T': steps per prompt).
        n_requests = batch_size.astype(np.float64)
        kv_tokens = np.maximum(kv_capacity_bytes, 0.0) / kv_bytes_per_token
        *schedule, running, staggered = engine_schedule(
            n_requests, input_len, output_len, max_prefill_tokens, full_length_slots=max_concurrent,
            max_num_seqs=max_num_seqs, kv_tokens=kv_tokens, block_tokens=cal.kv_block_tokens,
            paged=cal.paged_kv_admission,
        )  # fmt: skip
        if np.any(staggered):
            run = continuous_run(shape, n_requests, running, input_len, output_len, gpu, cal, peak_flops_per_s,
                                 kv_dtype_bytes, max_prefill_tokens, tp, schedule)  # fmt: skip
            timing = {key: value if key == "op_classes" else _choose(staggered, run[key], value)
                      for key, value in timing.items()}  # fmt: skip
            concurrency = np.where(staggered, running, concurrency)
    total_s = timing["total_s"]
    full_shape = np.broadcast_shapes(np.shape(total_s), np.shape(max_concurrent))  # every field gets it
    feasible, max_concurrent = np.broadcast_to(feasible, full_shape), np.broadcast_to(max_concurrent, full_shape)

    def masked(values):
        return np.where(feasible, values, np.nan)

    return Estimate(
        output_tokens_per_s=masked(total_batch * output_len / total_s),
        total_tokens_per_s=masked(total_batch * (input_len + output_len) / total_s),
        ttft_s=masked(timing["ttft_s"]),
        ttft_p50_s=masked(timing["ttft_p50_s"]),
        ttft_p99_s=masked(timing["ttft_p99_s"]),
        tpot_s=masked(np.where(output_len > 1, timing["tpot_s"], 0.0)),
        prefill_time_s=masked(timing["prefill_s"]),
        decode_time_s=masked(timing["decode_s"]),
        total_time_s=masked(total_s),
        peak_memory_bytes=weight_bytes
        + cal.workspace_bytes
        + np.where(feasible, np.minimum(concurrency * seq_kv_bytes, np.maximum(kv_capacity_bytes, 0.0)), 0.0),
        weight_bytes=weight_bytes * np.ones_like(total_s),
        kv_bytes_per_token=kv_bytes_per_token * np.ones_like(total_s),
        max_concurrent_seqs=max_concurrent.astype(np.int64),
        concurrency=np.where(feasible, concurrency, 0).astype(np.int64),
        capacity_limited=feasible & (batch_size > max_concurrent),
        feasible=feasible,
        prefill_compute_bound=np.broadcast_to(timing["prefill_compute_bound"], full_shape),
        decode_compute_bound=np.broadcast_to(timing["decode_compute_bound"], full_shape),
        decode_attention_occupancy=masked(timing["occupancy"] * np.ones_like(total_s)),
        prefill_op_time_s={k: masked(v) for k, v in timing["prefill_ops"].items()},
        decode_op_time_s={k: masked(v) for k, v in timing["decode_ops"].items()},
        op_classes=timing["op_classes"],
    )


def _choose(where, continuous, static):
    """Per point: the continuous run's value where `where`, else the static one (dicts of arrays key by key)."""
    if isinstance(static, dict):  # per-op times: the same operators in both
        return {key: np.where(where, continuous[key], value) for key, value in static.items()}
    return np.where(where, continuous, static)


def _static_waves(shape, batch_size, concurrency, full_waves, remainder, input_len, output_len, gpu, cal,
                  peak_flops_per_s, kv_dtype_bytes, max_prefill_tokens, tp) -> dict:  # fmt: skip
    """Static waves (our engine): full waves of `concurrency` sequences, then a last partial one."""
    wave_args = (input_len, output_len, gpu, cal, peak_flops_per_s, kv_dtype_bytes, max_prefill_tokens, tp)
    wave = _wave(shape, concurrency, *wave_args)
    total_s = full_waves * wave.total_s
    # TTFT: requests of full wave w wait w·wave.total_s, then their own prefill forward (closed-form sums).
    ttft_sum_s = concurrency * wave.total_s * full_waves * (full_waves - 1) / 2 + full_waves * wave.first_token_sum_s(
        concurrency
    )
    last = None
    if np.any(remainder > 0):  # a last, partial wave (only when the batch exceeds the KV capacity)
        last = _wave(shape, np.maximum(remainder, 1.0), *wave_args)
        has_last = remainder > 0
        total_s = total_s + np.where(has_last, last.total_s, 0.0)
        ttft_sum_s = ttft_sum_s + np.where(has_last, remainder * full_waves * wave.total_s +
                                           last.first_token_sum_s(np.maximum(remainder, 1.0)), 0.0)  # fmt: skip

    def ttft_at(quantile):
        index = nearest_rank(quantile, batch_size)
        wave_index = index // concurrency
        first_s = wave.first_token_s(index - wave_index * concurrency)
        if last is not None:
            first_s = np.where(wave_index < full_waves, first_s, last.first_token_s(index - wave_index * concurrency))
        return wave_index * wave.total_s + first_s

    steps = np.maximum(output_len - 1, 1)
    prefill_overhead_s = (wave.full_chunks + (wave.last_chunk_s > 0)) * cal.step_overhead_s
    return {"total_s": total_s, "ttft_s": ttft_sum_s / batch_size, "ttft_p50_s": ttft_at(0.5),
            "ttft_p99_s": ttft_at(0.99), "tpot_s": wave.decode_s / steps, "prefill_s": wave.prefill_s,
            "decode_s": wave.decode_s, "occupancy": wave.occupancy,
            "prefill_compute_bound": wave.prefill_compute_s > (wave.prefill_s - prefill_overhead_s) / 2,
            "decode_compute_bound": wave.decode_compute_s > (wave.decode_s - steps * cal.step_overhead_s) / 2,
            "prefill_ops": wave.prefill_ops, "decode_ops": wave.decode_ops, "op_classes": wave.op_classes}  # fmt: skip
