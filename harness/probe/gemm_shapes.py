"""The probe's GEMM shape grid: single GEMMs timed over weight shapes [N, K] at M = 1, 2, 4, ... rows, turned into
the perfmodel's shape factors (perfmodel/gemm_shapes.py: each shape's speed relative to the curve model's GEMMs).

- `gemm_shape_times`: `F.linear` of M rows against [N, K] weights, cycling through enough copies of each weight that
  they outgrow the caches (`cold_bytes`), as a model's layers do in a forward pass; the median over repeats of the
  time per GEMM. All shapes are timed at one M before the next M, so a machine that drifts moves a whole row of the
  grid together, which the relative factors cancel.
- `gemm_shape_factors`: at each grid point the perfmodel's roofline time of that GEMM (peak, bandwidth at the memory
  efficiency) over the measured time, divided by the same ratio of the curve model's GEMM operators as the grid
  predicts them (its matrices interpolated on the grid): 1 where a shape runs as fast as the curve's model, so the
  measured curve keeps predicting that model's pass and other shapes move by their own speed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GemmShapeTimes:
    rows: tuple[int, ...]  # M of the grid
    n_values: tuple[int, ...]  # weight rows N (output features)
    k_values: tuple[int, ...]  # weight columns K (input features)
    time_s: np.ndarray  # [rows][n][k] median seconds of one GEMM (over the samples, when several)
    element_bytes: int
    cold_bytes: int  # the weight copies cycled through per shape, at least this many bytes
    repeats: int  # timings per point, of which time_s is the median
    sample_time_s: list[np.ndarray] = field(default_factory=list)  # each sample's time_s

    @classmethod
    def median_of(cls, samples: list[GemmShapeTimes]) -> GemmShapeTimes:
        """One grid from samples of it taken at different times: the median time at each point."""
        first = samples[0]
        stacked = np.stack([s.time_s for s in samples])
        return cls(first.rows, first.n_values, first.k_values, np.median(stacked, axis=0), first.element_bytes,
                   first.cold_bytes, first.repeats, [s.time_s for s in samples])  # fmt: skip

    def spread_pct(self) -> float:
        """The largest (slowest − fastest sample) / median over the grid's points, in %."""
        if len(self.sample_time_s) < 2:
            return 0.0
        stacked = np.stack(self.sample_time_s)
        return float(100 * np.max((stacked.max(axis=0) - stacked.min(axis=0)) / self.time_s))


def gemm_shape_times(timer, device: str, dtype, rows, n_values, k_values, cold_bytes: int,
                     repeats: int) -> GemmShapeTimes:  # fmt: skip
    """Median seconds of one `F.linear` of M rows against an [N, K] weight, for every (M, N, K) of the grid; each
    shape's weights cycled from ceil(cold_bytes / weight bytes) copies (at least 2), so none is read from a cache."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the torch convention)

    from harness.probe.decode import replayable

    element_bytes = torch.tensor([], dtype=dtype).element_size()
    times = np.zeros((len(rows), len(n_values), len(k_values)))
    weights = {}
    for n in n_values:
        for k in k_values:
            copies = max(2, -(-cold_bytes // (n * k * element_bytes)))
            weights[n, k] = [torch.randn(n, k, device=device).to(dtype) for _ in range(copies)]  # [N, K] each
    for i, m in enumerate(rows):
        for j, n in enumerate(n_values):
            for l, k in enumerate(k_values):
                x = torch.randn(m, k, device=device).to(dtype)  # [M, K]

                def cycle(x=x, copies=weights[n, k]):
                    for weight in copies:
                        F.linear(x, weight)  # [M, N]

                run = replayable(torch, device, cycle)
                run()  # warm-up
                per_gemm = [timer.once_s(run, 1, events=True) / len(weights[n, k]) for _ in range(repeats)]
                times[i, j, l] = statistics.median(per_gemm)
    return GemmShapeTimes(tuple(rows), tuple(n_values), tuple(k_values), times, element_bytes, cold_bytes, repeats,
                          [times.copy()])  # fmt: skip


def single_gemm_roofline_s(rows, n, k, element_bytes: int, peak_flops_per_s: float, bandwidth_bytes_per_s: float):
    """The perfmodel's roofline time of one GEMM of `rows` rows against an [n, k] weight (arrays broadcast): its
    FLOPs at the peak or its weight and activation bytes at `bandwidth_bytes_per_s`, whichever is longer."""
    rows, n, k = (np.asarray(a, dtype=float) for a in (rows, n, k))
    flops = 2.0 * rows * n * k
    moved_bytes = element_bytes * (n * k + rows * (n + k))
    return np.maximum(flops / peak_flops_per_s, moved_bytes / bandwidth_bytes_per_s)


def gemm_shape_factors(times: GemmShapeTimes, curve_arch, peak_flops_per_s: float, bandwidth_bytes_per_s: float,
                       memory_efficiency: float) -> np.ndarray:  # fmt: skip
    """[rows][n][k] shape factors: each grid GEMM's speed over its roofline, divided at each M by the speed the grid
    gives the curve model's GEMM operators together (perfmodel.operators, each at the weighting of
    perfmodel.gemm_shapes.operator_shape_factor): at the grid's M the perfmodel then predicts the curve model's pass
    exactly as the curve does."""
    from harness.probe.decode import gemm_ops_roofline_s, one_gpu_shape
    from perfmodel.gemm_shapes import operator_shape_factor
    from perfmodel.operators import dense_ops

    m, n, k = np.meshgrid(times.rows, times.n_values, times.k_values, indexing="ij")  # [rows][n][k] each
    bandwidth = bandwidth_bytes_per_s * memory_efficiency
    absolute = single_gemm_roofline_s(m, n, k, times.element_bytes, peak_flops_per_s, bandwidth) / times.time_s
    grid = (times.rows, times.n_values, times.k_values, absolute)
    rows = np.asarray(times.rows, dtype=float)
    ops = dense_ops(one_gpu_shape(curve_arch), rows, rows, 1.0)
    roofline_s = gemm_ops_roofline_s(ops, peak_flops_per_s, bandwidth)
    at_grid_speed_s = [r / operator_shape_factor(grid, ops[name].gemm_shapes, rows) for name, r in roofline_s.items()]
    curve_model = sum(roofline_s.values()) / sum(at_grid_speed_s)  # [rows]
    return absolute / curve_model[:, None, None]
