"""Our engine on a CUDA GPU: the decode step captured in a CUDA graph (Triton attention) replays to exactly the
tokens the same step gives eagerly, and the torch and Triton attention paths agree. Skipped without CUDA."""

import pytest
import torch

from harness.engines.base import EngineOptions, Workload
from perfmodel import PRESETS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _final_tokens(arch, workload, options, prompts):
    from harness.engines.llama import TORCH_DTYPES, LlamaModel, LlamaWeights, PagedKVCache
    from harness.engines.torch_engine import WaveRunner

    with torch.inference_mode():
        dtype = TORCH_DTYPES[options.dtype]
        weights = LlamaWeights.random(arch, dtype, "cuda", seed=0)
        pages = -(-(workload.input_len + workload.output_len) // options.block_size)
        cache = PagedKVCache(arch, workload.batch_size * pages, options.block_size, dtype, "cuda")
        runner = WaveRunner(LlamaModel(arch, weights, attention=options.attention), cache, workload.batch_size,
                            pages, workload, options)  # fmt: skip
        runner.serve(prompts)
        return runner.tokens.clone(), runner.graph is not None


@pytest.mark.parametrize("name", ["tiny-gqa4", "small-kv3"])
def test_cuda_graph_replay_gives_the_eager_tokens(name):
    arch, workload = PRESETS[name], Workload(5, 37, 9)
    prompts = torch.randint(0, arch.vocab, (5, 37), generator=torch.Generator().manual_seed(0)).cuda()
    base = EngineOptions(device="cuda", dtype="float32", attention="triton")
    graphed, used_graph = _final_tokens(arch, workload, base, prompts)
    eager, used_none = _final_tokens(arch, workload, EngineOptions(**{**base.__dict__, "cuda_graph": False}), prompts)
    assert used_graph and not used_none
    assert torch.equal(graphed, eager)


def test_engine_serves_bf16_with_graphs_and_reports_cuda_memory():
    from harness.engines import get_engine

    m = get_engine("torch").run(PRESETS["small-base"], Workload(8, 128, 16),
                                EngineOptions(device="cuda", dtype="bfloat16", attention="triton", repeats=2))  # fmt: skip
    assert m.status == "ok" and m.concurrency == 8 and len(m.runs) == 2
    assert m.peak_memory_bytes >= PRESETS["small-base"].n_params_total * 2
