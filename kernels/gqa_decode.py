"""GQA decode attention in Triton: one query token per sequence against a contiguous or paged KV cache.

Layout (FlashInfer naming): q [batch, num_qo_heads, head_dim]; contiguous cache [batch, num_kv_heads, max_kv_len,
head_dim], or paged cache [num_blocks, block_size, num_kv_heads, head_dim] with block_table [batch, max_blocks];
seq_lens [batch] (kv_len of each sequence, >= 1).

Plan / run (FlashInfer style), so a decode step can be captured in a CUDA graph:
`plan_gqa_decode` makes every host-side decision once per batch shape (validation, num_splits from
`kernels.heuristics`, the split buffers); `gqa_decode_run` only checks tensor metadata against the plan and
launches: it never reads a tensor value on the host (no sync) and allocates nothing when given `out`. seq_lens is
read on the device only, so one plan serves every step of a decode loop while seq_lens <= plan.max_kv_len.
`gqa_decode` is the one-call convenience path: it validates the seq_lens values on the host (a sync), then plans
and runs.

Stage 1 (`_split_kv_kernel`), grid (batch, num_kv_heads, num_splits): the GROUP query heads that share a KV head
are packed into the M dimension of one tl.dot (padded to BLOCK_H >= 16 rows and masked), so every K/V tile is
read from HBM once per group, not once per query head. Each program walks its slice of the KV sequence in
BLOCK_N tiles with an online softmax and writes a normalized partial output and its log-sum-exp.
Stage 2 (`_merge_kernel`), grid (batch, num_qo_heads): merges the splits with their log-sum-exps. Splitting the
KV sequence (split-KV, "flash-decoding") keeps the GPU busy when batch × num_kv_heads is small and kv_len long.
With one split (SINGLE_SPLIT) stage 1 writes the final output straight into `out` in q's dtype and the merge
kernel is not launched. Accumulation is fp32 for every input dtype (fp16, bf16, fp32). Every pointer offset is
64-bit (program ids and page numbers are cast to int64 before they meet a stride): caches and views with more
than 2**31 elements are addressed correctly.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.heuristics import choose_num_splits

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TRITON_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
LOG2E = 1.4426950408889634


@triton.jit
def _split_kv_kernel(
    q_ptr, k_ptr, v_ptr, seq_lens_ptr, block_table_ptr, o_ptr, lse_ptr,
    stride_qb, stride_qh, stride_qd,
    stride_k_blk, stride_k_pos, stride_k_head, stride_k_d,
    stride_v_blk, stride_v_pos, stride_v_head, stride_v_d,
    stride_bt_b, stride_bt_blk,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_lb, stride_lh, stride_ls,
    sm_scale_log2,
    num_splits,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr, DOT_PRECISION: tl.constexpr, SINGLE_SPLIT: tl.constexpr,
):  # fmt: skip
    """o_ptr: partial outputs [batch, num_qo_heads, num_splits, head_dim] fp32 and lse_ptr their log-sum-exps, or
    with SINGLE_SPLIT the final output [batch, num_qo_heads, head_dim] in q's dtype (stride_os = 0, lse unused)."""
    batch = tl.program_id(0).to(tl.int64)  # int64: every product with a stride below is 64-bit
    kv_head = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2)  # positions stay int32 (kv_len < 2**31); pointer offsets are int64

    kv_len = tl.load(seq_lens_ptr + batch).to(tl.int32)
    split_len = tl.cdiv(tl.cdiv(kv_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, kv_len)

    offs_h = tl.arange(0, BLOCK_H)  # query heads of this group, padded
    offs_d = tl.arange(0, HEAD_DIM)
    head_mask = offs_h < GROUP
    q_heads = kv_head * GROUP + offs_h  # int64
    q = tl.load(
        q_ptr + batch * stride_qb + q_heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
        mask=head_mask[:, None],
        other=0.0,
    )  # [BLOCK_H, HEAD_DIM]
    k_base = k_ptr + kv_head * stride_k_head
    v_base = v_ptr + kv_head * stride_v_head

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], dtype=tl.float32)
    for tile_start in range(start, end, BLOCK_N):
        offs_n = tile_start + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        if PAGED:  # position -> (page from the block table, slot in the page)
            page = tl.load(block_table_ptr + batch * stride_bt_b + (offs_n // PAGE_SIZE) * stride_bt_blk,
                           mask=n_mask, other=0).to(tl.int64)  # fmt: skip
            slot = (offs_n % PAGE_SIZE).to(tl.int64)
            k_rows = page * stride_k_blk + slot * stride_k_pos
            v_rows = page * stride_v_blk + slot * stride_v_pos
        else:
            pos = offs_n.to(tl.int64)
            k_rows = batch * stride_k_blk + pos * stride_k_pos
            v_rows = batch * stride_v_blk + pos * stride_v_pos
        k = tl.load(k_base + k_rows[:, None] + offs_d[None, :] * stride_k_d,
                    mask=n_mask[:, None], other=0.0)  # fmt: skip  # [BLOCK_N, HEAD_DIM]
        scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)  # [BLOCK_H, BLOCK_N], fp32
        scores = tl.where(n_mask[None, :], scores * sm_scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + v_rows[:, None] + offs_d[None, :] * stride_v_d,
                    mask=n_mask[:, None], other=0.0)  # fmt: skip  # [BLOCK_N, HEAD_DIM]
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    o_ptrs = (o_ptr + batch * stride_ob + q_heads[:, None] * stride_oh + split.to(tl.int64) * stride_os
              + offs_d[None, :] * stride_od)  # fmt: skip
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=head_mask[:, None])
    if not SINGLE_SPLIT:
        lse = tl.where(end > start, m_i + tl.log2(tl.where(l_i > 0, l_i, 1.0)), float("-inf"))  # log2 domain
        lse_ptrs = lse_ptr + batch * stride_lb + q_heads * stride_lh + split.to(tl.int64) * stride_ls
        tl.store(lse_ptrs, lse, mask=head_mask)


@triton.jit
def _merge_kernel(
    partial_out_ptr, partial_lse_ptr, out_ptr,
    stride_pb, stride_ph, stride_ps, stride_pd,
    stride_lb, stride_lh, stride_ls,
    stride_ob, stride_oh, stride_od,
    num_splits,
    HEAD_DIM: tl.constexpr,
):  # fmt: skip
    batch = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    lse_row = partial_lse_ptr + batch * stride_lb + head * stride_lh
    out_row = partial_out_ptr + batch * stride_pb + head * stride_ph
    # Split 0 always holds keys (kv_len >= 1); later splits of short sequences may be empty (lse = -inf,
    # weight exp2(-inf) = 0), so no branch is needed.
    part_ptrs = out_row + offs_d * stride_pd
    m = tl.load(lse_row)
    total = tl.full([1], 1.0, dtype=tl.float32)  # a tensor, so its type stays fixed across the loop
    acc = tl.load(part_ptrs)
    for _ in range(1, num_splits):  # step the (64-bit) pointers split by split
        lse_row += stride_ls
        part_ptrs += stride_ps
        lse = tl.load(lse_row)
        part = tl.load(part_ptrs)
        m_new = tl.maximum(m, lse)
        scale_old = tl.exp2(m - m_new)
        weight = tl.exp2(lse - m_new)
        acc = acc * scale_old + part * weight
        total = total * scale_old + weight
        m = m_new
    out_ptrs = out_ptr + batch * stride_ob + head * stride_oh + offs_d * stride_od
    tl.store(out_ptrs, (acc / total).to(out_ptr.dtype.element_ty))


def kernel_constexprs(dtype: str, *, group: int, head_dim: int, paged: bool, page_size: int,
                      single_split: bool = False) -> dict:  # fmt: skip
    """Compile-time constants of `_split_kv_kernel` for a triton dtype name ("fp16", "bf16", "fp32")."""
    return {
        "GROUP": group,
        "HEAD_DIM": head_dim,
        "BLOCK_H": max(16, triton.next_power_of_2(group)),  # tl.dot needs M >= 16: pad the group, mask the rest
        "BLOCK_N": 32 if dtype == "fp32" and head_dim > 64 else 64,  # fp32 tiles are twice the bytes
        "PAGED": paged,
        "PAGE_SIZE": page_size,
        "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32",  # fp32 inputs: no TF32 rounding
        "SINGLE_SPLIT": single_split,  # stage 1 writes the final output; no merge
    }


@dataclass(frozen=True, eq=False)  # eq=False: tensor fields; plans compare by identity
class DecodePlan:
    """Host-side decisions for one batch shape, made once by `plan_gqa_decode` and reused by every
    `gqa_decode_run`. Its split buffers are scratch: do not run one plan concurrently on two streams."""

    batch: int
    num_qo_heads: int
    num_kv_heads: int
    head_dim: int
    max_kv_len: int  # upper bound of any seq_len this plan will see (e.g. input_len + output_len)
    num_splits: int
    dtype: torch.dtype
    paged: bool
    page_size: int  # 1 when contiguous
    device: torch.device
    partial_out: torch.Tensor | None  # [batch, num_qo_heads, num_splits, head_dim] fp32; None when num_splits == 1
    partial_lse: torch.Tensor | None  # [batch, num_qo_heads, num_splits] fp32; None when num_splits == 1
    constexprs: dict  # of `_split_kv_kernel` (`kernel_constexprs`)


def _int_at_least(name, value, low, alternative=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be {alternative}an int >= {low}, got {value!r}")
    return int(value)


def plan_gqa_decode(batch, num_qo_heads, num_kv_heads, head_dim, max_kv_len, *, dtype, device, page_size=None,
                    num_splits=None, sm_count=None) -> DecodePlan:  # fmt: skip
    """Validate a batch shape, pick num_splits (`choose_num_splits`; sm_count from the device when None, 1 on the
    CPU) and allocate the split buffers. page_size=None means a contiguous cache. Raises ValueError."""
    batch, num_qo_heads, num_kv_heads, head_dim, max_kv_len = (
        _int_at_least(name, value, low)
        for name, value, low in [("batch", batch, 0), ("num_qo_heads", num_qo_heads, 1),
                                 ("num_kv_heads", num_kv_heads, 1), ("head_dim", head_dim, 1),
                                 ("max_kv_len", max_kv_len, 1)]
    )  # fmt: skip
    if num_qo_heads % num_kv_heads:
        raise ValueError(f"num_qo_heads={num_qo_heads} is not divisible by num_kv_heads={num_kv_heads}")
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two >= 16, got {head_dim}")
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of fp16/bf16/fp32, got {dtype}")
    page_size, num_splits, sm_count = (
        None if value is None else _int_at_least(name, value, 1, "None or ")
        for name, value in [("page_size", page_size), ("num_splits", num_splits), ("sm_count", sm_count)]
    )
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if num_splits is None:
        if sm_count is None:
            sm_count = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
        num_splits = choose_num_splits(batch, num_kv_heads, max_kv_len, sm_count)
    partial_out = partial_lse = None
    if num_splits > 1:
        partial_out = torch.empty(batch, num_qo_heads, num_splits, head_dim, device=device, dtype=torch.float32)
        partial_lse = torch.empty(batch, num_qo_heads, num_splits, device=device, dtype=torch.float32)
    paged = page_size is not None
    constexprs = kernel_constexprs(TRITON_DTYPE[dtype], group=num_qo_heads // num_kv_heads, head_dim=head_dim,
                                   paged=paged, page_size=page_size or 1, single_split=num_splits == 1)  # fmt: skip
    return DecodePlan(batch, num_qo_heads, num_kv_heads, head_dim, max_kv_len, num_splits, dtype, paged,
                      page_size or 1, device, partial_out, partial_lse, constexprs)  # fmt: skip


def _cache_geometry(q, k_cache, v_cache, seq_lens, block_table):
    """Metadata checks shared by the run and the convenience path (never reads a value);
    returns (num_kv_heads, capacity per sequence, page_size)."""
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
    batch, _, head_dim = q.shape
    if block_table is None:
        cache_batch, num_kv_heads, capacity, cache_dim = k_cache.shape
        page_size = 1
        if cache_batch != batch:
            raise ValueError(f"contiguous cache batch {cache_batch} != q batch {batch}")
    else:
        _, page_size, num_kv_heads, cache_dim = k_cache.shape
        if block_table.dim() != 2 or block_table.shape[0] != batch:
            raise ValueError(f"block_table must be [batch={batch}, max_blocks], got {tuple(block_table.shape)}")
        if block_table.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"block_table must be int32 or int64, got {block_table.dtype}")
        capacity = block_table.shape[1] * page_size
    if cache_dim != head_dim:
        raise ValueError(f"head_dim of q ({head_dim}) and of the cache ({cache_dim}) differ")
    if seq_lens.shape != (batch,) or seq_lens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"seq_lens must be an int32/int64 tensor of shape [{batch}], got {tuple(seq_lens.shape)} "
                         f"{seq_lens.dtype}")  # fmt: skip
    return num_kv_heads, capacity, page_size


def _check_run(plan, q, k_cache, v_cache, seq_lens, block_table, out):
    """Shapes, dtypes and devices against the plan: metadata only, no sync."""
    want = (plan.batch, plan.num_qo_heads, plan.head_dim)
    if tuple(q.shape) != want or q.dtype != plan.dtype or q.device != plan.device:
        raise ValueError(f"q is {tuple(q.shape)} {q.dtype} on {q.device}, but the plan is for "
                         f"[batch, num_qo_heads, head_dim]={list(want)} {plan.dtype} on {plan.device}")  # fmt: skip
    if (block_table is not None) != plan.paged:
        raise ValueError(f"the plan is for a {'paged' if plan.paged else 'contiguous'} cache: "
                         f"block_table must be {'given' if plan.paged else 'None'}")  # fmt: skip
    num_kv_heads, capacity, page_size = _cache_geometry(q, k_cache, v_cache, seq_lens, block_table)
    if num_kv_heads != plan.num_kv_heads or page_size != plan.page_size:
        raise ValueError(f"the cache has num_kv_heads={num_kv_heads}, page_size={page_size}; the plan is for "
                         f"num_kv_heads={plan.num_kv_heads}, page_size={plan.page_size}")  # fmt: skip
    if plan.batch and capacity < plan.max_kv_len:
        raise ValueError(f"the cache holds {capacity} tokens per sequence < the plan's max_kv_len={plan.max_kv_len}")
    if out is not None and (out.shape != q.shape or out.dtype != q.dtype or out.device != q.device):
        raise ValueError(f"out must be {tuple(q.shape)} {q.dtype} on {q.device} like q, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")  # fmt: skip


def gqa_decode_run(plan, q, k_cache, v_cache, seq_lens, *, block_table=None, scale=None, out=None) -> torch.Tensor:
    """Launch the decode kernels of `plan`: no host read of any tensor value, no allocation when `out` is given,
    so it can be captured in a CUDA graph. Every seq_lens value must lie in [1, plan.max_kv_len] (not checked:
    that would need a sync). scale is a Python float (default 1/sqrt(head_dim)). Returns out."""
    _check_run(plan, q, k_cache, v_cache, seq_lens, block_table, out)
    if out is None:
        out = torch.empty_like(q)
    if plan.batch == 0:
        return out
    scale = 1.0 / math.sqrt(plan.head_dim) if scale is None else float(scale)
    if plan.paged:  # [num_blocks, page_size, num_kv_heads, head_dim]
        k_strides, v_strides = k_cache.stride(), v_cache.stride()
        table, table_strides = block_table, block_table.stride()
    else:  # [batch, num_kv_heads, max_kv_len, head_dim] -> (block=batch, pos, head, d) stride order
        kb, kh, ks, kd = k_cache.stride()
        vb, vh, vs, vd = v_cache.stride()
        k_strides, v_strides = (kb, ks, kh, kd), (vb, vs, vh, vd)
        table, table_strides = seq_lens, (0, 0)  # table unused when not paged
    if plan.num_splits == 1:  # stage 1 writes the final output; lse_ptr is never dereferenced
        ob, oh, od = out.stride()
        o, o_strides, lse, lse_strides = out, (ob, oh, 0, od), out, (0, 0, 0)
    else:
        o, o_strides = plan.partial_out, plan.partial_out.stride()
        lse, lse_strides = plan.partial_lse, plan.partial_lse.stride()
    _split_kv_kernel[(plan.batch, plan.num_kv_heads, plan.num_splits)](
        q, k_cache, v_cache, seq_lens, table, o, lse,
        *q.stride(), *k_strides, *v_strides, *table_strides, *o_strides, *lse_strides,
        scale * LOG2E, plan.num_splits, **plan.constexprs, num_warps=4, num_stages=2,
    )  # fmt: skip
    if plan.num_splits > 1:
        _merge_kernel[(plan.batch, plan.num_qo_heads)](
            plan.partial_out, plan.partial_lse, out, *plan.partial_out.stride(), *plan.partial_lse.stride(),
            *out.stride(), plan.num_splits, HEAD_DIM=plan.head_dim, num_warps=4,
        )  # fmt: skip
    return out


def gqa_decode(q, k_cache, v_cache, seq_lens, *, block_table=None, scale=None, num_splits=None):
    """softmax(q·Kᵀ·scale)·V for one query token per sequence; returns [batch, num_qo_heads, head_dim] in q's dtype.
    Convenience path: checks the seq_lens values on the host (a sync), then `plan_gqa_decode` + `gqa_decode_run`."""
    num_kv_heads, capacity, page_size = _cache_geometry(q, k_cache, v_cache, seq_lens, block_table)
    batch, num_qo_heads, head_dim = q.shape
    max_kv_len = 1
    if batch:
        low, high = (int(x) for x in torch.aminmax(seq_lens))
        if low < 1 or high > capacity:
            raise ValueError(f"seq_lens must lie in [1, {capacity}] (the cache's capacity per sequence)")
        max_kv_len = high
    plan = plan_gqa_decode(batch, num_qo_heads, num_kv_heads, head_dim, max_kv_len, dtype=q.dtype, device=q.device,
                           page_size=None if block_table is None else page_size, num_splits=num_splits)  # fmt: skip
    return gqa_decode_run(plan, q, k_cache, v_cache, seq_lens, block_table=block_table, scale=scale)
