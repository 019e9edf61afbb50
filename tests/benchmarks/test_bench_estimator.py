"""Benchmark (`make bench`): the vectorized estimator must evaluate >= 1,000,000 (architecture, batch size)
points per second on the 2-core CI machine — the search depends on it — single-GPU and with tensor parallelism, and
>= 100,000 with vLLM's continuous-batching scheduler (batches past its 1024 running sequences on an H200)."""

import numpy as np
import pytest

from perfmodel import PRESETS, ArchBatch, estimate, get_calibration, get_gpu

POINTS_PER_S_TARGET = {"torch": 1_000_000, "vllm": 100_000}


@pytest.mark.parametrize(("engine", "tp", "batch_step"), [("torch", 1, 1), ("torch", 2, 1), ("vllm", 1, 8)])
def test_estimator_points_per_second(benchmark, engine, tp, batch_step):
    base = PRESETS["llama-3.2-1b"]
    d_model = np.arange(512, 512 + 64 * 400, 64)  # 400 architectures
    archs = ArchBatch.like(base, d_model=d_model).column()
    batch_sizes = np.arange(1, 256 * batch_step + 1, batch_step)[None, :]  # x 256 batch sizes = 102,400 points
    gpu, cal = get_gpu("h200"), get_calibration("h200", engine)

    def run():
        return estimate(archs, gpu, batch_size=batch_sizes, input_len=4096, output_len=1024, calibration=cal, tp=tp)

    result = benchmark(run)
    n_points = result.output_tokens_per_s.size
    assert n_points >= 100_000
    assert np.isfinite(result.output_tokens_per_s[result.feasible]).all()
    if benchmark.stats is not None:  # None when pytest-benchmark is disabled (the plain test suite)
        points_per_s = n_points / benchmark.stats.stats.median
        benchmark.extra_info["points_per_s"] = points_per_s
        assert points_per_s >= POINTS_PER_S_TARGET[engine]
