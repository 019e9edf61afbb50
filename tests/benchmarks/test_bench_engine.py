"""Benchmark (`make bench`): one decode step of our engine — eager torch on the CPU, the captured CUDA graph on a GPU —
with the decode tokens/s it implies, for regression tracking of the engine itself."""

import pytest
import torch

from harness.engines.base import EngineOptions, Workload
from harness.engines.llama import TORCH_DTYPES, LlamaModel, LlamaWeights, PagedKVCache
from harness.engines.torch_engine import WaveRunner
from perfmodel import PRESETS

BATCH, PROMPT, STEPS = 8, 128, 16


def _runner(device: str, dtype: str, attention: str) -> WaveRunner:
    arch = PRESETS["small-base"]
    options = EngineOptions(device=device, dtype=dtype, attention=attention)
    workload = Workload(BATCH, PROMPT, STEPS + 1)
    pages = -(-(PROMPT + STEPS + 1) // options.block_size)
    weights = LlamaWeights.random(arch, TORCH_DTYPES[dtype], device)
    cache = PagedKVCache(arch, BATCH * pages, options.block_size, TORCH_DTYPES[dtype], device)
    runner = WaveRunner(LlamaModel(arch, weights, attention=attention), cache, BATCH, pages, workload, options)
    runner.serve(torch.randint(0, arch.vocab, (BATCH, PROMPT)).to(device))  # prefill the cache, capture a graph
    return runner


def _record(benchmark):
    if benchmark.stats is not None:
        benchmark.extra_info["decode_tokens_per_s"] = BATCH / benchmark.stats.stats.median


def test_cpu_decode_step(benchmark):
    with torch.inference_mode():
        runner = _runner("cpu", "float32", "torch")

        def step():  # the decode step the engine times, KV length held at the prompt's end
            runner._reset(runner.tokens)
            runner._step()

        benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
    _record(benchmark)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_step(benchmark):
    with torch.inference_mode():
        runner = _runner("cuda", "bfloat16", "triton")

        def step():
            runner._reset(runner.tokens)
            runner.graph.replay()
            torch.cuda.synchronize()

        benchmark.pedantic(step, rounds=50, iterations=1, warmup_rounds=5)
    _record(benchmark)
