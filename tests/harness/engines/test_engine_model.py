"""Our engine's Llama model computes the right thing: prefill and every decode step against a plain reference
(full recompute, no cache) over GQA groups 1/3/4/8, qkv bias, qk-norm, tied and untied embeddings, paged and
contiguous caches."""

import pytest
import torch
from llama_reference import reference_logits

from harness.engines.llama import LlamaModel, LlamaWeights, PagedKVCache
from perfmodel.arch import Arch

ARCHS = {
    "mha": Arch(64, 2, 4, 4, 16, 96, 101),
    "gqa3-qkv-bias": Arch(48, 2, 6, 2, 16, 80, 97, qkv_bias=True),  # n_head·d_head = 96 != d_model
    "gqa4-qk-norm-tied": Arch(64, 2, 8, 2, 16, 96, 101, qk_norm=True, tie_embeddings=True),
    "gqa8-two-kv-heads": Arch(64, 2, 16, 2, 16, 96, 101),  # query heads 0-7 read KV head 0, 8-15 KV head 1
}
PROMPT_LEN, DECODE_STEPS, BATCH = 7, 4, 3


def shuffled_table(batch, pages_per_seq, num_blocks, seed=0):
    """Each sequence gets pages scattered over the cache, so a wrong block-table lookup cannot pass."""
    order = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed))
    return order[: batch * pages_per_seq].view(batch, pages_per_seq).to(torch.int32)


def serve(model, arch, tokens, block_size, table, pages_in_order=False):
    """Prefill then DECODE_STEPS greedy steps; returns per-step logits [steps + 1, B, V] and the token history."""
    cache = PagedKVCache(arch, int(table.max()) + 1, block_size, torch.float32, "cpu")
    logits = [model.prefill(tokens, cache, table)]
    history = tokens.tolist()
    for step in range(DECODE_STEPS):
        next_tokens = logits[-1].argmax(-1)
        for b in range(len(history)):
            history[b].append(int(next_tokens[b]))
        positions = torch.full((len(history),), PROMPT_LEN + step)
        logits.append(model.decode(next_tokens, positions, cache, table, (positions + 1).to(torch.int32),
                                   max_kv_len=PROMPT_LEN + step + 1, pages_in_order=pages_in_order))  # fmt: skip
    return torch.stack(logits), history


@pytest.mark.parametrize("name", list(ARCHS))
def test_prefill_and_every_decode_step_match_the_reference(name):
    arch = ARCHS[name]
    weights = LlamaWeights.random(arch, torch.float32, "cpu", seed=1)
    tokens = torch.randint(0, arch.vocab, (BATCH, PROMPT_LEN), generator=torch.Generator().manual_seed(2))
    pages = -(-(PROMPT_LEN + DECODE_STEPS) // 4)
    logits, history = serve(LlamaModel(arch, weights), arch, tokens, 4, shuffled_table(BATCH, pages, 3 * BATCH * pages))
    for b in range(BATCH):
        for step in range(DECODE_STEPS + 1):  # step 0 = prefill's last position
            expected = reference_logits(arch, weights, history[b][: PROMPT_LEN + step])
            torch.testing.assert_close(logits[step, b], expected, atol=2e-5, rtol=1e-4)


def test_paged_and_contiguous_caches_give_the_same_tokens():
    arch = ARCHS["gqa3-qkv-bias"]
    model = LlamaModel(arch, LlamaWeights.random(arch, torch.float32, "cpu", seed=3))
    tokens = torch.randint(0, arch.vocab, (BATCH, PROMPT_LEN), generator=torch.Generator().manual_seed(4))
    length = PROMPT_LEN + DECODE_STEPS
    contiguous = torch.arange(BATCH, dtype=torch.int32)[:, None]  # one page holding the whole sequence
    paged_logits, paged_history = serve(model, arch, tokens, 2, shuffled_table(BATCH, -(-length // 2), 40, seed=5))
    flat_logits, flat_history = serve(model, arch, tokens, length, contiguous)
    assert paged_history == flat_history
    torch.testing.assert_close(paged_logits, flat_logits, atol=1e-5, rtol=1e-5)


def test_pages_in_order_read_in_place_equal_the_gather():
    arch = ARCHS["gqa4-qk-norm-tied"]
    model = LlamaModel(arch, LlamaWeights.random(arch, torch.float32, "cpu", seed=9))
    tokens = torch.randint(0, arch.vocab, (BATCH, PROMPT_LEN), generator=torch.Generator().manual_seed(10))
    pages = -(-(PROMPT_LEN + DECODE_STEPS) // 4)
    in_order = torch.arange(BATCH * pages, dtype=torch.int32).view(BATCH, pages)
    viewed, viewed_history = serve(model, arch, tokens, 4, in_order, pages_in_order=True)
    gathered, gathered_history = serve(model, arch, tokens, 4, in_order)
    assert viewed_history == gathered_history
    torch.testing.assert_close(viewed, gathered, atol=1e-6, rtol=1e-6)


def test_weights_count_matches_the_arch_parameter_count():
    for arch in ARCHS.values():
        weights = LlamaWeights.random(arch, torch.float32, "cpu")
        assert weights.nbytes == arch.n_params_total * 4


def test_prefill_in_chunks_equals_one_pass():
    arch = ARCHS["mha"]
    weights = LlamaWeights.random(arch, torch.float32, "cpu")
    tokens = torch.randint(0, arch.vocab, (5, PROMPT_LEN), generator=torch.Generator().manual_seed(6))
    table = torch.arange(5, dtype=torch.int32)[:, None]
    one = LlamaModel(arch, weights).prefill(tokens, PagedKVCache(arch, 5, 8, torch.float32, "cpu"), table)
    chunked_model = LlamaModel(arch, weights, max_prefill_tokens=2 * PROMPT_LEN)  # 2 sequences per chunk
    chunked = chunked_model.prefill(tokens, PagedKVCache(arch, 5, 8, torch.float32, "cpu"), table)
    torch.testing.assert_close(chunked, one)


def test_triton_decode_path_matches_the_torch_path():
    """The engine's Triton attention (kernels.gqa_decode_run from one plan for the whole decode) computes the same
    logits as its torch path; on the CPU this runs in Triton's interpreter (tests/conftest.py)."""
    from kernels.gqa_decode import plan_gqa_decode

    arch = Arch(64, 2, 6, 2, 16, 96, 101, qk_norm=True)  # group 3
    weights = LlamaWeights.random(arch, torch.float32, "cpu", seed=7)
    tokens = torch.randint(0, arch.vocab, (BATCH, PROMPT_LEN), generator=torch.Generator().manual_seed(8))
    pages = -(-(PROMPT_LEN + DECODE_STEPS) // 4)
    table = shuffled_table(BATCH, pages, 2 * BATCH * pages)
    plan = plan_gqa_decode(BATCH, arch.n_head, arch.n_kv_head, arch.d_head, PROMPT_LEN + DECODE_STEPS,
                           dtype=torch.float32, device="cpu", page_size=4)  # fmt: skip
    results = {}
    for attention in ("torch", "triton"):
        model = LlamaModel(arch, weights, attention=attention)
        cache = PagedKVCache(arch, int(table.max()) + 1, 4, torch.float32, "cpu")
        logits = [model.prefill(tokens, cache, table)]
        for step in range(DECODE_STEPS):
            positions = torch.full((BATCH,), PROMPT_LEN + step)
            logits.append(model.decode(logits[-1].argmax(-1), positions, cache, table, (positions + 1).int(),
                                       plan=plan, max_kv_len=PROMPT_LEN + step + 1))  # fmt: skip
        results[attention] = torch.stack(logits)
    torch.testing.assert_close(results["triton"], results["torch"], atol=1e-5, rtol=1e-4)
