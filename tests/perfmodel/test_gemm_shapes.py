"""The GEMM shape grid (perfmodel/gemm_shapes.py): interpolated in the logs, held at its edges, an operator of several
matrices at the speed its bytes move, and the roofline moved by it only for GEMMs."""

import dataclasses

import numpy as np
import pytest

from perfmodel.calibration import Calibration
from perfmodel.gemm_shapes import operator_shape_factor, shape_factor
from perfmodel.hardware import get_gpu
from perfmodel.operators import Op
from perfmodel.roofline import roofline

ROWS, N, K = (1.0, 4.0), (512.0, 2048.0), (256.0, 1024.0)
# [rows][n][k]: at M = 1 the factor doubles along K, at M = 4 every shape runs at 1
FACTORS = (((1.0, 2.0), (1.0, 2.0)), ((1.0, 1.0), (1.0, 1.0)))


def grid_factor(rows, n, k):
    return shape_factor(ROWS, N, K, FACTORS, rows, n, k)


def test_exact_at_the_grid_points():
    for i, m in enumerate(ROWS):
        for j, n in enumerate(N):
            for l, k in enumerate(K):
                assert grid_factor(m, n, k) == pytest.approx(FACTORS[i][j][l])


def test_between_points_linear_in_the_logs():
    assert grid_factor(1, 512, 512) == pytest.approx(np.sqrt(2))  # K = 512 halfway between 256 and 1024 in log
    assert grid_factor(2, 512, 1024) == pytest.approx(np.sqrt(2))  # M = 2 halfway between 1 and 4: 2^(1/2)
    assert grid_factor(1, 1024, 1024) == pytest.approx(2.0)  # N does not matter here


def test_held_at_the_edges():
    assert grid_factor(1, 512, 64) == pytest.approx(1.0) and grid_factor(1, 512, 8192) == pytest.approx(2.0)
    assert grid_factor(4096, 100_000, 1024) == pytest.approx(1.0)  # a prefill-sized M keeps the largest M's factor


def test_arrays_broadcast():
    factor = grid_factor(np.array([[1.0], [4.0]]), 512, np.array([256.0, 1024.0]))
    assert factor.shape == (2, 2) and factor == pytest.approx(np.array([[1.0, 2.0], [1.0, 1.0]]))


def test_one_point_axes_are_constant():
    assert shape_factor((1.0,), (512.0,), (512.0,), (((1.5,),),), 8, 99, 7) == pytest.approx(1.5)


CAL = Calibration(1.0, 1.0, 0.0, 0.0, 0.9, 0.0, False, gemm_curve_rows=(1.0, 4.0), gemm_curve_factors=(1.0, 1.0),
                  gemm_shape_rows=ROWS, gemm_shape_n=N, gemm_shape_k=K, gemm_shape_factors=FACTORS)  # fmt: skip


def test_an_operator_moves_its_bytes_at_the_weighted_harmonic_mean():
    # two matrices of equal bytes at factors 1 and 2: their bytes take 1/1 + 1/2 = 1.5 time units, 2 units of bytes
    assert operator_shape_factor(CAL.gemm_shape_grid, ((512, 256), (128, 1024)), 1.0) == pytest.approx(2 / 1.5)
    # three times the bytes at factor 2: 4 units in 1/1 + 3/2 = 2.5
    assert operator_shape_factor(CAL.gemm_shape_grid, ((512, 256), (384, 1024)), 1.0) == pytest.approx(4 / 2.5)


def test_the_roofline_moves_gemms_by_their_shape_and_nothing_else():
    gpu = get_gpu("h100-sxm")
    peak = gpu.peak_flops_per_s(2)
    gemm = Op(flops=np.array(2.0e6), bytes=np.array(1.0e9), kernels=1, op_class="gemm", gemm_rows=np.array(1.0),
              gemm_shapes=((512, 1024),))  # fmt: skip
    without_grid = dataclasses.replace(CAL, gemm_shape_rows=(), gemm_shape_n=(), gemm_shape_k=(), gemm_shape_factors=())
    fast, _ = roofline(gemm, gpu, CAL, peak)
    plain, _ = roofline(gemm, gpu, without_grid, peak)
    assert fast == pytest.approx(plain / 2)  # K = 1024 at M = 1: twice as fast as the curve
    norm = Op(flops=np.array(1.0e6), bytes=np.array(1.0e9), kernels=1, op_class="elementwise")
    assert roofline(norm, gpu, CAL, peak)[0] == pytest.approx(roofline(norm, gpu, without_grid, peak)[0])
