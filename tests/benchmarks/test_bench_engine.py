"""Benchmark (`make bench`): one decode step of our engine — eager torch on the CPU, the captured CUDA graph on a GPU —
with the decode tokens/s it implies, for regression tracking of the engine itself."""

from dataclasses import replace

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


# The search check's Surefire-GQA around small-base (README, "The search held against measurement"): 32 query heads
# on 2 KV heads. Its decode attention reads each KV head once; a path that copies K and V out to every query head
# (SDPA's enable_gqa on the CPU) takes about 3× as long here, which the comparison against the baseline catches.
GQA16 = replace(PRESETS["small-base"], d_model=512, n_head=32, n_kv_head=2, d_ff=2432, name="surefire-gqa-small-base")
ATTENTION_BATCH, ATTENTION_KV_LEN = 16, 320


def test_cpu_decode_attention_at_gqa_16(benchmark):
    arch, block_size = GQA16, 16
    pages = ATTENTION_KV_LEN // block_size
    model = LlamaModel(arch, LlamaWeights.random(replace(arch, n_layer=1), torch.float32, "cpu"), attention="torch")
    cache = PagedKVCache(replace(arch, n_layer=1), ATTENTION_BATCH * pages, block_size, torch.float32, "cpu")
    cache.k.normal_()
    cache.v.normal_()
    table = torch.arange(ATTENTION_BATCH * pages, dtype=torch.int32).view(ATTENTION_BATCH, pages)  # pages in order
    seq_lens = torch.full((ATTENTION_BATCH,), ATTENTION_KV_LEN, dtype=torch.int32)
    q = torch.randn(ATTENTION_BATCH, arch.n_head, arch.d_head)  # [B, hq, dh]
    with torch.inference_mode():
        benchmark.pedantic(model._torch_decode_attention, args=(q, cache, 0, table, seq_lens, ATTENTION_KV_LEN, True),
                           rounds=20, iterations=1, warmup_rounds=3)  # fmt: skip
    if benchmark.stats is not None:  # K and V of every KV head read once: what the perfmodel counts
        kv_bytes = 2 * ATTENTION_BATCH * arch.n_kv_head * ATTENTION_KV_LEN * arch.d_head * 4
        benchmark.extra_info["kv_bytes_per_s"] = kv_bytes / benchmark.stats.stats.median
