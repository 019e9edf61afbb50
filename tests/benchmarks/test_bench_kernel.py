"""GPU benchmark (`make bench` on a CUDA machine): the Triton GQA decode kernel at a serving-sized shape, with
achieved bandwidth recorded for regression tracking. Skipped without CUDA (the interpreter is not a benchmark)."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize(("batch_size", "kv_len"), [(8, 8192), (128, 2048)])
def test_gqa_decode_bandwidth(benchmark, batch_size, kv_len):
    from kernels.bench import KernelPoint
    from kernels.gqa_decode import gqa_decode_run, plan_gqa_decode

    point = KernelPoint(batch_size=batch_size, kv_len=kv_len, group=4, head_dim=128)
    q = torch.randn(batch_size, point.num_qo_heads, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch_size, point.num_kv_heads, kv_len, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    seq_lens = torch.full((batch_size,), kv_len, device="cuda", dtype=torch.int32)
    plan = plan_gqa_decode(batch_size, point.num_qo_heads, point.num_kv_heads, 128, kv_len, dtype=q.dtype,
                           device=q.device)  # fmt: skip
    out = torch.empty_like(q)

    def step():  # the run alone, as the engine's decode step calls it
        gqa_decode_run(plan, q, k, v, seq_lens, out=out)
        torch.cuda.synchronize()

    benchmark(step)
    if benchmark.stats is not None:
        benchmark.extra_info["achieved_gb_per_s"] = point.bytes_moved / benchmark.stats.stats.median / 1e9
