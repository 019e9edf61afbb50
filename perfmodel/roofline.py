"""The roofline of one operator and of one forward: time = max(FLOPs / (peak·compute_eff), bytes / (bw·memory_eff))
+ kernels · launch overhead, at the efficiencies of the operator's class (`Calibration.efficiencies`), with the
small-M GEMM term and the GEMV regime, or the measured GEMM curve that replaces both, with its shape grid
(perfmodel/estimator.py, perfmodel/gemm_shapes.py)."""

from __future__ import annotations

import numpy as np

from perfmodel.calibration import Calibration
from perfmodel.gemm_shapes import operator_shape_factor
from perfmodel.hardware import Hardware
from perfmodel.operators import Op
from perfmodel.parallel import communication_s


def roofline(op: Op, gpu: Hardware, cal: Calibration, peak_flops_per_s):
    """(time, compute-bound) of one operator at its class's efficiencies."""
    compute_eff, memory_eff = cal.efficiencies(op.op_class)
    compute_s = op.flops / (peak_flops_per_s * compute_eff)
    memory_s = op.bytes / (gpu.hbm_bandwidth_bytes_per_s * memory_eff)
    if op.gemm_rows is not None and cal.gemm_curve_rows:  # the measured curve: M rows run `speed` times as fast
        speed = cal.gemm_curve_factor(op.gemm_rows)
        if cal.gemm_shape_grid and op.gemm_shapes:  # ... and its weights' shapes run at their own speed beside it
            speed = speed * operator_shape_factor(cal.gemm_shape_grid, op.gemm_shapes, op.gemm_rows)
        compute_s, memory_s = compute_s / speed, memory_s / speed
    elif op.gemm_rows is not None:
        if cal.gemm_half_efficiency_tokens:  # a GEMM of M rows runs at M / (M + M½) of the compute efficiency
            compute_s = compute_s * (1.0 + cal.gemm_half_efficiency_tokens / op.gemm_rows)
        if cal.gemv_max_tokens:  # a GEMV streams the weights at its own efficiency, without the M½ penalty
            gemv = np.asarray(op.gemm_rows) <= cal.gemv_max_tokens
            compute_s = np.where(gemv, op.flops / (peak_flops_per_s * compute_eff), compute_s)
            memory_s = np.where(gemv, op.bytes / (gpu.hbm_bandwidth_bytes_per_s * cal.gemv_memory_efficiency), memory_s)
    return np.maximum(compute_s, memory_s) + op.kernels * cal.kernel_launch_overhead_s, compute_s >= memory_s


def forward_times(ops: dict[str, Op], gpu: Hardware, cal: Calibration, peak_flops_per_s):
    """Per-op times of one forward, and the part of it spent in compute-bound ops."""
    times, compute_s = {}, 0.0
    for name, op in ops.items():
        times[name], compute_bound = roofline(op, gpu, cal, peak_flops_per_s)
        compute_s = compute_s + np.where(compute_bound, times[name], 0.0)
    return times, compute_s


def communication_time(shape, tokens, sampled_seqs, tp, gpu: Hardware, cal: Calibration):
    """TP communication of one forward (perfmodel/parallel.py); 0 without a TP group."""
    if gpu.interconnect_bandwidth_bytes_per_s is None:
        return 0.0  # tp = 1 (estimate() refuses tp > 1 without interconnect figures)
    bandwidth = gpu.interconnect_bandwidth_bytes_per_s * cal.interconnect_efficiency
    return communication_s(shape, tokens, sampled_seqs, tp, bandwidth, gpu.interconnect_latency_s)
