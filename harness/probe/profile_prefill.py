"""Per-op time of our engine's prefill forward at several forward sizes (torch.profiler, CPU or CUDA): which ops cost
more per token as a forward holds more tokens. The check `predict --breakdown` is held against when a sweep's
prefill per token moves with the batch. Run it with `python -m harness.cli.profile_prefill` (harness/cli/).
"""

from __future__ import annotations

import collections


def op_us_per_token(arch, input_len: int, forward_tokens: int, repeats: int, device: str) -> dict[str, float]:
    """{aten op: self µs per prompt token} of `repeats` prefill forwards of forward_tokens // input_len sequences."""
    import torch

    from harness.engines.llama import LlamaModel, LlamaWeights, PagedKVCache

    batch = max(1, forward_tokens // input_len)
    block = 16
    pages = -(-input_len // block)
    weights = LlamaWeights.random(arch, torch.float32 if device == "cpu" else torch.bfloat16, device)
    model = LlamaModel(arch, weights, max_prefill_tokens=batch * input_len)  # the whole batch in one forward
    cache = PagedKVCache(arch, batch * pages, block, weights.embed.dtype, device)
    block_table = torch.arange(batch * pages, dtype=torch.int32, device=device).view(batch, pages)
    tokens = torch.randint(0, arch.vocab, (batch, input_len), device=device)
    model.prefill(tokens, cache, block_table)  # warm-up
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device != "cpu":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(repeats):
            model.prefill(tokens, cache, block_table)
        if device != "cpu":
            torch.cuda.synchronize()
    totals = collections.Counter()
    for event in profile.key_averages():
        totals[event.key] += event.self_device_time_total if device != "cpu" else event.self_cpu_time_total
    return {op: us / repeats / (batch * input_len) for op, us in totals.items() if us > 0}
