"""A GEMM's speed by its weight's shape: the probe's grid of shape factors, read and interpolated.

The measured GEMM curve (perfmodel.calibration `gemm_curve_rows` / `gemm_curve_factors`) is one model's GEMMs timed
together: it carries that model's matrix shapes to every architecture. At small M the speed of a BLAS kernel depends
on the shape itself (on one 2-vCPU EPYC a GEMV reads a [32000, 512] weight at 14 GB/s and a [512, 3328] one at
24 GB/s: short rows cost more per byte), so a model with wider or narrower matrices runs its GEMMs at another speed
than the curve's model. `archscale probe` therefore also times single GEMMs over a grid of weight shapes [N, K] at
M = 1, 2, 4, ... rows (harness/probe/gemm_shapes.py) and writes, at each grid point, the GEMM's speed relative to the
curve model's GEMMs at the same M:

    gemm_shape_rows    = [M0, M1, ...]           rows of the grid
    gemm_shape_n       = [N0, N1, ...]           output features (weight rows)
    gemm_shape_k       = [K0, K1, ...]           input features (weight columns)
    gemm_shape_factors = [[[f(M0,N0,K0), ...]]]  indexed [M][N][K]; 1 = as fast as the curve model's GEMMs

A GEMM of M rows against an [N, K] weight then runs `gemm_curve_factor(M) × gemm_shape_factor(M, N, K)` times as fast
as its roofline. The factor is interpolated linearly in log M, log N, log K and log factor, and held at the nearest
grid value beyond the grid's edges (a prefill-sized M beyond the grid keeps the shape factor of the grid's largest M).
An operator of several matrices (the MLP's gate/up and down) takes their weight-byte-weighted harmonic mean: the
speed at which its bytes move.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np

from perfmodel.errors import ArchscaleInputError

SHAPE_AXES = ("gemm_shape_rows", "gemm_shape_n", "gemm_shape_k")
SHAPE_FIELDS = (*SHAPE_AXES, "gemm_shape_factors")  # all four or none


def check_positive_array(values, where: str) -> None:
    """One line unless `values` is a non-empty array of finite positive numbers (`where` names the field)."""
    if (
        not isinstance(values, list | tuple)
        or not values
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
        )
    ):
        raise ArchscaleInputError(f"{where} must be a non-empty array of positive numbers, got {values!r}")


def check_increasing(values, where: str, least: float | None = None) -> None:
    """One line unless `values` increase strictly (and start at `least` or above, where given)."""
    if any(b <= a for a, b in pairwise(values)) or (least is not None and values[0] < least):
        raise ArchscaleInputError(f"{where} must increase strictly{f' from at least {least:g}' if least else ''}, "
                                  f"got {values!r}")  # fmt: skip


def check_gemm_shape_grid(entry: dict, where: str) -> dict:
    """The shape grid's four fields as tuples, checked: all or none, axes of positive numbers increasing strictly
    (rows from 1), factors positive and shaped [rows][n][k]; one-line errors naming `where`."""
    given = [name for name in SHAPE_FIELDS if name in entry]
    if not given:
        return {}
    if len(given) < len(SHAPE_FIELDS):
        missing = ", ".join(name for name in SHAPE_FIELDS if name not in entry)
        raise ArchscaleInputError(f"{where}: {given[0]} needs {missing} beside it")
    for name in SHAPE_AXES:
        check_positive_array(entry[name], f"{where}.{name}")
        check_increasing(entry[name], f"{where}.{name}", least=1 if name == "gemm_shape_rows" else None)
    shape = tuple(len(entry[name]) for name in SHAPE_AXES)
    try:
        factors = np.array(entry["gemm_shape_factors"], dtype=float)
    except (TypeError, ValueError):
        factors = None
    if factors is None or factors.shape != shape or not np.all(np.isfinite(factors) & (factors > 0)):
        raise ArchscaleInputError(f"{where}.gemm_shape_factors must be an array of positive numbers shaped "
                                  f"[rows][n][k] = {list(shape)}")  # fmt: skip
    return {name: tuple(map(float, entry[name])) for name in SHAPE_AXES} | {"gemm_shape_factors": _nested(factors)}


def _nested(array: np.ndarray):
    return tuple(_nested(a) for a in array) if array.ndim > 1 else tuple(map(float, array))


def _axis_position(axis: tuple[float, ...], values):
    """(lower index, weight of the upper neighbour) of `values` on `axis`, linear in log, clamped at the ends."""
    log_axis = np.log(np.asarray(axis))
    log_values = np.log(np.maximum(np.asarray(values, dtype=float), 1e-30))
    if len(axis) == 1:
        return np.zeros(np.shape(log_values), dtype=int), np.zeros(np.shape(log_values))
    lower = np.clip(np.searchsorted(log_axis, log_values, side="right") - 1, 0, len(axis) - 2)
    weight = np.clip((log_values - log_axis[lower]) / (log_axis[lower + 1] - log_axis[lower]), 0.0, 1.0)
    return lower, weight


def shape_factor(rows_axis, n_axis, k_axis, factors, rows, n, k) -> np.ndarray:
    """The grid's factor at `rows`, `n`, `k` (arrays that broadcast): trilinear in the logs, clamped at the edges."""
    log_grid = np.log(np.asarray(factors, dtype=float))  # [rows][n][k]
    positions = [_axis_position(axis, values) for axis, values in ((rows_axis, rows), (n_axis, n), (k_axis, k))]
    im, wm, i_n, wn, ik, wk = np.broadcast_arrays(*(array for position in positions for array in position))
    total = np.zeros(im.shape)
    for dm in (0, 1):
        for dn in (0, 1):
            for dk in (0, 1):
                weight = (wm if dm else 1 - wm) * (wn if dn else 1 - wn) * (wk if dk else 1 - wk)
                corner = log_grid[
                    np.minimum(im + dm, log_grid.shape[0] - 1),
                    np.minimum(i_n + dn, log_grid.shape[1] - 1),
                    np.minimum(ik + dk, log_grid.shape[2] - 1),
                ]
                total = total + weight * corner
    return np.exp(total)


def operator_shape_factor(grid, shapes, rows) -> np.ndarray:
    """The shape factor of an operator whose GEMMs have weights `shapes` ((n, k) pairs of arrays) at `rows` rows on
    `grid` (rows, n, k, factors): the weight-byte-weighted harmonic mean of each matrix's factor (the speed at which
    the operator's weights move)."""
    weights = [np.asarray(n, dtype=float) * np.asarray(k, dtype=float) for n, k in shapes]
    time_per_weight = sum(w / shape_factor(*grid, rows, n, k) for w, (n, k) in zip(weights, shapes, strict=True))
    return sum(weights) / time_per_weight
