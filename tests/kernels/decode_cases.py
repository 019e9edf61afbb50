"""Inputs shared by the kernel tests: random q/K/V, contiguous or paged with shuffled pages, and tolerances."""

import torch

TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def make_contiguous(batch, num_kv_heads, group, head_dim, max_kv_len, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, num_kv_heads * group, head_dim, generator=g).to(device, dtype)
    k = torch.randn(batch, num_kv_heads, max_kv_len, head_dim, generator=g).to(device, dtype)
    v = torch.randn(batch, num_kv_heads, max_kv_len, head_dim, generator=g).to(device, dtype)
    return q, k, v


def make_paged(seq_lens, num_kv_heads, group, head_dim, block_size, dtype, device, seed=0):
    """A paged cache whose blocks are shuffled, so a wrong block-table lookup cannot pass by accident."""
    g = torch.Generator().manual_seed(seed)
    batch = len(seq_lens)
    blocks_per_seq = [-(-n // block_size) for n in seq_lens]
    max_blocks = max(blocks_per_seq) + 1  # one spare column, never read
    num_blocks = sum(blocks_per_seq) + 3
    order = torch.randperm(num_blocks, generator=g)
    table = torch.zeros(batch, max_blocks, dtype=torch.int32)
    used = 0
    for b, n in enumerate(blocks_per_seq):
        table[b, :n] = order[used : used + n]
        used += n
    q = torch.randn(batch, num_kv_heads * group, head_dim, generator=g).to(device, dtype)
    k = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=g).to(device, dtype)
    v = torch.randn(num_blocks, block_size, num_kv_heads, head_dim, generator=g).to(device, dtype)
    return q, k, v, table.to(device)
