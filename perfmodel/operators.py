"""FLOPs, HBM bytes and kernel launches of each operator of a Llama-family forward pass, per phase.

Every function takes numpy arrays (or scalars) that broadcast together, so one call covers many architectures
and batch sizes. An operator's bytes are what it must move through HBM at least once: its weights, its input and
output activations, and in attention the KV cache it reads and the K/V it appends. B = dtype bytes.

Prefill of `n_seqs` sequences of `input_len` tokens (T = n_seqs·input_len tokens):
  qkv   2·T·d·(hq+2·hkv)·dh FLOPs      weights d·(hq+2·hkv)·dh·B + activations
  attn  2·n_seqs·hq·dh·input_len² (QK^T and PV, causal half)  q, k, v, out + K/V written to the cache
  o     2·T·hq·dh·d                   weights hq·dh·d·B + activations
  mlp   2·T·3·d·d_ff (gate, up, down) weights 3·d·d_ff·B + activations (SwiGLU product included)
  norm  2 RMSNorms per layer          read + write T·d·B each
  lm_head only the last token of each sequence: 2·n_seqs·d·V FLOPs, V·d·B weights + fp32 logits
Decode of one token for each of `n_seqs` sequences at KV length `kv_len`: the same with T = n_seqs, except
attention: 4·n_seqs·hq·dh·kv_len FLOPs and n_seqs·kv_len·2·hkv·dh·B bytes of KV cache read (each KV head's
cache is read once for its whole query group), plus q, out and the appended K/V.

Attention's cost is split into a part proportional to kv_len and a constant part, so the estimator can sum it
over a growing context in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGIT_BYTES = 4  # engines compute logits in fp32


@dataclass
class Op:
    """One operator summed over all layers (or once, for embedding and LM head). Arrays broadcast."""

    flops: np.ndarray
    bytes: np.ndarray
    kernels: int  # launches per forward pass
    gemm_rows: np.ndarray | None = None  # M (tokens) of its GEMMs; None for non-GEMM operators


@dataclass
class DecodeAttention:
    """Decode attention over all layers at KV length kv_len: flops = flops_per_kv·kv_len,
    bytes = bytes_per_kv·kv_len + bytes_fixed."""

    flops_per_kv: np.ndarray
    bytes_per_kv: np.ndarray
    bytes_fixed: np.ndarray
    kernels: int


def dense_ops(shape, tokens, lm_head_tokens) -> dict[str, Op]:
    """The operators whose cost does not depend on the context length, for `tokens` tokens in one forward."""
    d, L, hq, hkv, dh, dff, V, B = (
        shape.d_model,
        shape.n_layer,
        shape.n_head,
        shape.n_kv_head,
        shape.d_head,
        shape.d_ff,
        shape.vocab,
        shape.dtype_bytes,
    )
    qkv_width = (hq + 2 * hkv) * dh
    return {
        "qkv_proj": Op(
            flops=L * 2.0 * tokens * d * qkv_width,
            bytes=L * B * (d * qkv_width + tokens * (d + qkv_width)),
            kernels=L,
            gemm_rows=tokens,
        ),
        "o_proj": Op(
            flops=L * 2.0 * tokens * hq * dh * d,
            bytes=L * B * (hq * dh * d + tokens * (hq * dh + d)),
            kernels=L,
            gemm_rows=tokens,
        ),
        "mlp": Op(  # gate+up GEMM [d -> 2·d_ff], SiLU·mul [2·d_ff -> d_ff], down GEMM [d_ff -> d]
            flops=L * 2.0 * tokens * 3 * d * dff,
            bytes=L * B * (3 * d * dff + tokens * ((d + 2 * dff) + (2 * dff + dff) + (dff + d))),
            kernels=3 * L,
            gemm_rows=tokens,
        ),
        "norms": Op(  # two RMSNorms per layer + the final one (a few FLOPs per element)
            flops=(2 * L + 1) * 4.0 * tokens * d,
            bytes=(2 * L + 1) * B * 2.0 * tokens * d,
            kernels=2 * L + 1,
        ),
        "embedding": Op(flops=np.zeros_like(tokens * d, dtype=np.float64), bytes=B * 2.0 * tokens * d, kernels=1),
        "lm_head": Op(
            flops=2.0 * lm_head_tokens * d * V,
            bytes=B * (V * d + lm_head_tokens * d) + LOGIT_BYTES * lm_head_tokens * V,
            kernels=1,
            gemm_rows=lm_head_tokens,
        ),
    }


def prefill_attention(shape, n_seqs, input_len) -> Op:
    """Causal self-attention over `input_len` tokens for `n_seqs` sequences, all layers (flash-style I/O)."""
    L, hq, hkv, dh, B = shape.n_layer, shape.n_head, shape.n_kv_head, shape.d_head, shape.dtype_bytes
    tokens = n_seqs * input_len
    return Op(
        flops=L * 2.0 * n_seqs * hq * dh * input_len**2,
        # read q, k, v; write out; write K and V into the cache
        bytes=L * B * tokens * ((hq + 2 * hkv) * dh + hq * dh + 2 * hkv * dh),
        kernels=2 * L,  # rotary + attention
    )


def decode_attention(shape, n_seqs) -> DecodeAttention:
    """One decode step's attention for `n_seqs` sequences, all layers, as affine functions of kv_len."""
    L, hq, hkv, dh, B = shape.n_layer, shape.n_head, shape.n_kv_head, shape.d_head, shape.dtype_bytes
    return DecodeAttention(
        flops_per_kv=L * 4.0 * n_seqs * hq * dh,
        bytes_per_kv=L * B * n_seqs * 2.0 * hkv * dh,
        # q in, out written, the new token's K and V appended to the cache
        bytes_fixed=L * B * n_seqs * (2.0 * hq * dh + 2.0 * hkv * dh),
        kernels=2 * L,  # rotary + cache append fused, decode attention
    )
