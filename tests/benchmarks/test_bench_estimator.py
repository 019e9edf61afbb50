"""Benchmark (`make bench`): the vectorized estimator must evaluate >= 1,000,000 (architecture, batch size)
points per second on the 2-core CI machine — the search depends on it — single-GPU and with tensor parallelism."""

import numpy as np
import pytest

from perfmodel import PRESETS, ArchBatch, estimate, get_calibration, get_gpu

POINTS_PER_S_TARGET = 1_000_000


@pytest.mark.parametrize("tp", [1, 2])
def test_estimator_points_per_second(benchmark, tp):
    base = PRESETS["llama-3.2-1b"]
    d_model = np.arange(512, 512 + 64 * 400, 64)  # 400 architectures
    archs = ArchBatch.like(base, d_model=d_model).column()
    batch_sizes = np.arange(1, 257)[None, :]  # x 256 batch sizes = 102,400 points
    gpu, cal = get_gpu("h200"), get_calibration("h200", "torch")

    def run():
        return estimate(archs, gpu, batch_size=batch_sizes, input_len=4096, output_len=1024, calibration=cal, tp=tp)

    result = benchmark(run)
    n_points = result.output_tokens_per_s.size
    assert n_points >= 100_000
    assert np.isfinite(result.output_tokens_per_s[result.feasible]).all()
    if benchmark.stats is not None:  # None when pytest-benchmark is disabled (the plain test suite)
        points_per_s = n_points / benchmark.stats.stats.median
        benchmark.extra_info["points_per_s"] = points_per_s
        assert points_per_s >= POINTS_PER_S_TARGET
