"""GQA decode attention in Triton: one query token per sequence against a contiguous or paged KV cache.

Layout (FlashInfer naming): q [batch, num_qo_heads, head_dim]; contiguous cache [batch, num_kv_heads, max_kv_len,
head_dim], or paged cache [num_blocks, block_size, num_kv_heads, head_dim] with block_table [batch, max_blocks];
seq_lens [batch] (kv_len of each sequence, >= 1).

Stage 1 (`_split_kv_kernel`), grid (batch, num_kv_heads, num_splits): the GROUP query heads that share a KV head
are packed into the M dimension of one tl.dot (padded to BLOCK_H >= 16 rows and masked), so every K/V tile is
read from HBM once per group, not once per query head. Each program walks its slice of the KV sequence in
BLOCK_N tiles with an online softmax and writes a normalized partial output and its log-sum-exp.
Stage 2 (`_merge_kernel`), grid (batch, num_qo_heads): merges the splits with their log-sum-exps. Splitting the
KV sequence (split-KV, "flash-decoding") keeps the GPU busy when batch × num_kv_heads is small and kv_len long.
Accumulation is fp32 for every input dtype (fp16, bf16, fp32).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from kernels.heuristics import choose_num_splits

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634


@triton.jit
def _split_kv_kernel(
    q_ptr, k_ptr, v_ptr, seq_lens_ptr, block_table_ptr, partial_out_ptr, partial_lse_ptr,
    stride_qb, stride_qh, stride_qd,
    stride_k_blk, stride_k_pos, stride_k_head, stride_k_d,
    stride_v_blk, stride_v_pos, stride_v_head, stride_v_d,
    stride_bt_b, stride_bt_blk,
    stride_pb, stride_ph, stride_ps, stride_pd,
    stride_lb, stride_lh, stride_ls,
    sm_scale_log2,
    num_splits,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    batch = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)

    kv_len = tl.load(seq_lens_ptr + batch)
    split_len = tl.cdiv(tl.cdiv(kv_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, kv_len)

    offs_h = tl.arange(0, BLOCK_H)  # query heads of this group, padded
    offs_d = tl.arange(0, HEAD_DIM)
    head_mask = offs_h < GROUP
    q_heads = kv_head * GROUP + offs_h
    q = tl.load(
        q_ptr + batch * stride_qb + q_heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
        mask=head_mask[:, None],
        other=0.0,
    )  # [BLOCK_H, HEAD_DIM]

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], dtype=tl.float32)
    for tile_start in range(start, end, BLOCK_N):
        offs_n = tile_start + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        if PAGED:  # position -> (page from the block table, slot in the page); int64: caches exceed 2**31 elements
            page = tl.load(block_table_ptr + batch * stride_bt_b + (offs_n // PAGE_SIZE) * stride_bt_blk,
                           mask=n_mask, other=0).to(tl.int64)  # fmt: skip
            slot = offs_n % PAGE_SIZE
            k_rows = page * stride_k_blk + slot * stride_k_pos
            v_rows = page * stride_v_blk + slot * stride_v_pos
        else:
            k_rows = batch.to(tl.int64) * stride_k_blk + offs_n * stride_k_pos
            v_rows = batch.to(tl.int64) * stride_v_blk + offs_n * stride_v_pos
        k = tl.load(k_ptr + k_rows[:, None] + kv_head * stride_k_head + offs_d[None, :] * stride_k_d,
                    mask=n_mask[:, None], other=0.0)  # fmt: skip  # [BLOCK_N, HEAD_DIM]
        scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)  # [BLOCK_H, BLOCK_N], fp32
        scores = tl.where(n_mask[None, :], scores * sm_scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + v_rows[:, None] + kv_head * stride_v_head + offs_d[None, :] * stride_v_d,
                    mask=n_mask[:, None], other=0.0)  # fmt: skip  # [BLOCK_N, HEAD_DIM]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    has_keys = end > start
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.log2(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))  # log2 domain
    tl.store(
        partial_out_ptr + batch * stride_pb + q_heads[:, None] * stride_ph + split * stride_ps
        + offs_d[None, :] * stride_pd,
        out,
        mask=head_mask[:, None],
    )  # fmt: skip
    tl.store(partial_lse_ptr + batch * stride_lb + q_heads * stride_lh + split * stride_ls, lse, mask=head_mask)


@triton.jit
def _merge_kernel(
    partial_out_ptr, partial_lse_ptr, out_ptr,
    stride_pb, stride_ph, stride_ps, stride_pd,
    stride_lb, stride_lh, stride_ls,
    stride_ob, stride_oh, stride_od,
    num_splits,
    HEAD_DIM: tl.constexpr,
):  # fmt: skip
    batch = tl.program_id(0)
    head = tl.program_id(1)
    offs_d = tl.arange(0, HEAD_DIM)
    lse_row = partial_lse_ptr + batch * stride_lb + head * stride_lh
    out_row = partial_out_ptr + batch * stride_pb + head * stride_ph
    # Split 0 always holds keys (kv_len >= 1); later splits of short sequences may be empty (lse = -inf,
    # weight exp2(-inf) = 0), so no branch is needed.
    m = tl.load(lse_row)
    total = tl.full([1], 1.0, dtype=tl.float32)  # a tensor, so its type stays fixed across the loop
    acc = tl.load(out_row + offs_d * stride_pd)
    for split in range(1, num_splits):
        lse = tl.load(lse_row + split * stride_ls)
        part = tl.load(out_row + split * stride_ps + offs_d * stride_pd)
        m_new = tl.maximum(m, lse)
        scale_old = tl.exp2(m - m_new)
        weight = tl.exp2(lse - m_new)
        acc = acc * scale_old + part * weight
        total = total * scale_old + weight
        m = m_new
    tl.store(
        out_ptr + batch * stride_ob + head * stride_oh + offs_d * stride_od, (acc / total).to(out_ptr.dtype.element_ty)
    )


def kernel_constexprs(dtype: str, *, group: int, head_dim: int, paged: bool, page_size: int) -> dict:
    """Compile-time constants of `_split_kv_kernel` for a triton dtype name ("fp16", "bf16", "fp32")."""
    return {
        "GROUP": group,
        "HEAD_DIM": head_dim,
        "BLOCK_H": max(16, triton.next_power_of_2(group)),  # tl.dot needs M >= 16: pad the group, mask the rest
        "BLOCK_N": 32 if dtype == "fp32" and head_dim > 64 else 64,  # fp32 tiles are twice the bytes
        "PAGED": paged,
        "PAGE_SIZE": page_size,
        "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32",  # fp32 inputs: no TF32 rounding
    }


def _check_arguments(q, k_cache, v_cache, seq_lens, block_table):
    """Every user mistake raises a ValueError here, before anything is launched."""
    if q.dim() != 3:
        raise ValueError(f"q must be [batch, num_qo_heads, head_dim], got shape {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache and v_cache must be 4-D and equal in shape, got {tuple(k_cache.shape)} "
                         f"and {tuple(v_cache.shape)}")  # fmt: skip
    tensors = {"q": q, "k_cache": k_cache, "v_cache": v_cache, "seq_lens": seq_lens}
    if block_table is not None:
        tensors["block_table"] = block_table
    devices = {t.device for t in tensors.values()}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    if q.dtype not in SUPPORTED_DTYPES or k_cache.dtype != q.dtype or v_cache.dtype != q.dtype:
        raise ValueError(f"q, k_cache, v_cache must share one dtype of fp16/bf16/fp32, got "
                         f"{q.dtype}, {k_cache.dtype}, {v_cache.dtype}")  # fmt: skip
    batch, num_qo_heads, head_dim = q.shape
    if block_table is None:
        cache_batch, num_kv_heads, capacity, cache_dim = k_cache.shape
        if cache_batch != batch:
            raise ValueError(f"contiguous cache batch {cache_batch} != q batch {batch}")
    else:
        _, block_size, num_kv_heads, cache_dim = k_cache.shape
        if block_table.dim() != 2 or block_table.shape[0] != batch:
            raise ValueError(f"block_table must be [batch={batch}, max_blocks], got {tuple(block_table.shape)}")
        if block_table.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"block_table must be int32 or int64, got {block_table.dtype}")
        capacity = block_table.shape[1] * block_size
    if cache_dim != head_dim:
        raise ValueError(f"head_dim of q ({head_dim}) and of the cache ({cache_dim}) differ")
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two >= 16, got {head_dim}")
    if num_qo_heads % num_kv_heads:
        raise ValueError(f"num_qo_heads={num_qo_heads} is not divisible by num_kv_heads={num_kv_heads}")
    if seq_lens.shape != (batch,) or seq_lens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"seq_lens must be an int32/int64 tensor of shape [{batch}], got {tuple(seq_lens.shape)} "
                         f"{seq_lens.dtype}")  # fmt: skip
    if batch and (int(seq_lens.min()) < 1 or int(seq_lens.max()) > capacity):
        raise ValueError(f"seq_lens must lie in [1, {capacity}] (the cache's capacity per sequence)")
    return batch, num_qo_heads, num_kv_heads, head_dim, int(seq_lens.max()) if batch else 0


def gqa_decode(q, k_cache, v_cache, seq_lens, *, block_table=None, scale=None, num_splits=None):
    """softmax(q·Kᵀ·scale)·V for one query token per sequence; returns [batch, num_qo_heads, head_dim] in q's dtype."""
    batch, num_qo_heads, num_kv_heads, head_dim, max_kv_len = _check_arguments(
        q, k_cache, v_cache, seq_lens, block_table
    )
    group = num_qo_heads // num_kv_heads
    scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    if num_splits is None:
        sm_count = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 1
        num_splits = choose_num_splits(batch, num_kv_heads, max_kv_len, sm_count)
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}")
    out = torch.empty_like(q)
    if batch == 0:
        return out
    partial_out = torch.empty(batch, num_qo_heads, num_splits, head_dim, device=q.device, dtype=torch.float32)
    partial_lse = torch.empty(batch, num_qo_heads, num_splits, device=q.device, dtype=torch.float32)

    paged = block_table is not None
    if paged:
        k_strides = k_cache.stride()  # [num_blocks, block_size, num_kv_heads, head_dim]
        v_strides = v_cache.stride()
        table, table_strides, page_size = block_table, block_table.stride(), k_cache.shape[1]
    else:  # [batch, num_kv_heads, max_kv_len, head_dim] -> (block=batch, pos, head, d) stride order
        kb, kh, ks, kd = k_cache.stride()
        vb, vh, vs, vd = v_cache.stride()
        k_strides, v_strides = (kb, ks, kh, kd), (vb, vs, vh, vd)
        table, table_strides, page_size = seq_lens, (0, 0), 1  # table unused when not paged
    torch_to_triton = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    constexprs = kernel_constexprs(torch_to_triton[q.dtype], group=group, head_dim=head_dim, paged=paged,
                                   page_size=page_size)  # fmt: skip
    _split_kv_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, seq_lens, table, partial_out, partial_lse,
        *q.stride(), *k_strides, *v_strides, *table_strides, *partial_out.stride(), *partial_lse.stride(),
        scale * LOG2E, num_splits, **constexprs, num_warps=4, num_stages=2,
    )  # fmt: skip
    _merge_kernel[(batch, num_qo_heads)](
        partial_out, partial_lse, out, *partial_out.stride(), *partial_lse.stride(), *out.stride(), num_splits,
        HEAD_DIM=head_dim, num_warps=4,
    )  # fmt: skip
    return out
