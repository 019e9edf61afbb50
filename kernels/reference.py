"""Plain torch reference for GQA decode attention: every kernel test compares against it (fp32 math)."""

from __future__ import annotations

import math

import torch


def gather_paged(cache, block_table, batch_index, kv_len):
    """[num_blocks, block_size, num_kv_heads, head_dim] -> [num_kv_heads, kv_len, head_dim] for one sequence."""
    block_size = cache.shape[1]
    n_blocks = -(-kv_len // block_size)
    blocks = cache[block_table[batch_index, :n_blocks].long()]  # [n_blocks, block_size, Hkv, D]
    return blocks.reshape(-1, *cache.shape[2:])[:kv_len].transpose(0, 1)


def gqa_decode_reference(q, k_cache, v_cache, seq_lens, *, block_table=None, scale=None):
    """Same contract as `kernels.gqa_decode.gqa_decode`; loops over the batch, computes in fp32."""
    batch, num_qo_heads, head_dim = q.shape
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    out = torch.empty_like(q)
    for b in range(batch):
        kv_len = int(seq_lens[b])
        if block_table is None:
            k, v = k_cache[b, :, :kv_len], v_cache[b, :, :kv_len]  # [Hkv, kv_len, D]
        else:
            k, v = gather_paged(k_cache, block_table, b, kv_len), gather_paged(v_cache, block_table, b, kv_len)
        group = num_qo_heads // k.shape[0]
        k = k.float().repeat_interleave(group, dim=0)  # [Hq, kv_len, D]
        v = v.float().repeat_interleave(group, dim=0)
        scores = torch.einsum("hd,hnd->hn", q[b].float(), k) * scale  # [Hq, kv_len]
        out[b] = torch.einsum("hn,hnd->hd", scores.softmax(dim=-1), v).to(q.dtype)
    return out
