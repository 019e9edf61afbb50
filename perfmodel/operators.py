"""FLOPs, HBM bytes and kernel launches of each operator of a Llama-family forward pass, per phase.

Every function takes numpy arrays (or scalars) that broadcast together, so one call covers many architectures
and batch sizes. An operator's bytes are what it must move through HBM at least once: its weights, its input and
output activations, and in attention the KV cache it reads and the K/V it appends. B = dtype bytes.

Prefill of `n_seqs` sequences of `input_len` tokens (T = n_seqs·input_len tokens):
  qkv   2·T·d·(hq+2·hkv)·dh FLOPs      weights d·(hq+2·hkv)·dh·B + activations
  attn  2·n_seqs·hq·dh·input_len² (QK^T and PV, causal half)  q, k, v, out + K/V written to the cache
  o     2·T·hq·dh·d                   weights hq·dh·d·B + activations
  mlp   2·T·3·d·d_ff (gate, up, down) weights 3·d·d_ff·B + activations (SwiGLU product included)
  norm  2 RMSNorms per layer + final, each with its residual add: read x and residual, write both: 4·T·d·B
  rope  rotary on q and k inside attention: read + write T·(hq+hkv)·dh·B
  lm_head only the last token of each sequence: 2·n_seqs·d·V FLOPs, V·d·B weights + its logits in the compute dtype
  sampler per sampled token (the last of each sequence): cast the logits to fp32 (B + 4 bytes per logit when
        B < 4), then `sampler_logit_passes` fp32 reads or writes of them (greedy argmax: 1 read)
Decode of one token for each of `n_seqs` sequences at KV length `kv_len`: the same with T = n_seqs, except
attention: 4·n_seqs·hq·dh·kv_len FLOPs and n_seqs·kv_len·2·hkv·dh·Bkv bytes of KV cache read (each KV head's
cache is read once for its whole query group), plus q, out and the appended K/V. Bkv = the KV cache's dtype bytes,
which may differ from B (an fp8 cache next to bf16 weights).

Each operator belongs to a class with its own efficiencies (`Calibration.efficiencies`): "gemm" (projections, MLP,
LM head), "attention_prefill", "attention_decode" (with an occupancy term, perfmodel/occupancy.py), "elementwise"
(norms, embedding gather, the sampler).

Attention's cost is split into a part proportional to kv_len and a constant part, so the estimator can sum it
over a growing context in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGIT_BYTES = 4  # samplers work on fp32 logits


@dataclass
class Op:
    """One operator summed over all layers (or once, for embedding and LM head). Arrays broadcast."""

    flops: np.ndarray
    bytes: np.ndarray
    kernels: int  # launches per forward pass
    op_class: str  # "gemm", "attention_prefill", "elementwise" (see Calibration.efficiencies)
    gemm_rows: np.ndarray | None = None  # M (tokens) of its GEMMs; None for non-GEMM operators
    gemm_shapes: tuple = ()  # (N, K) of each weight matrix its GEMMs multiply by, one layer's (perfmodel/gemm_shapes.py)


@dataclass
class DecodeAttention:
    """Decode attention over all layers at KV length kv_len: flops = flops_per_kv·kv_len,
    bytes = bytes_per_kv·kv_len + bytes_fixed."""

    flops_per_kv: np.ndarray
    bytes_per_kv: np.ndarray
    bytes_fixed: np.ndarray
    kernels: int


def dense_ops(shape, tokens, lm_head_tokens, sampler_logit_passes) -> dict[str, Op]:
    """The operators whose cost does not depend on the context length, for `tokens` tokens in one forward that
    samples one token for each of `lm_head_tokens` sequences. `shape` is one GPU's share (perfmodel.parallel): its
    `vocab` is that GPU's rows of the LM head, `full_vocab` the logits the sampler sees."""
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
    # Per-architecture coefficients first (small arrays), then one multiply by the token count (the full shape).
    layer_bytes = L * B
    norm_count = 2 * L + 1
    return {
        "qkv_proj": Op(
            flops=(L * 2.0 * d * qkv_width) * tokens,
            bytes=layer_bytes * d * qkv_width + (layer_bytes * (d + qkv_width)) * tokens,
            kernels=L,
            op_class="gemm",
            gemm_rows=tokens,
            gemm_shapes=((qkv_width, d),),
        ),
        "o_proj": Op(
            flops=(L * 2.0 * hq * dh * d) * tokens,
            bytes=layer_bytes * hq * dh * d + (layer_bytes * (hq * dh + d)) * tokens,
            kernels=L,
            op_class="gemm",
            gemm_rows=tokens,
            gemm_shapes=((d, hq * dh),),
        ),
        "mlp": Op(  # gate+up GEMM [d -> 2·d_ff], SiLU·mul [2·d_ff -> d_ff], down GEMM [d_ff -> d]
            flops=(L * 6.0 * d * dff) * tokens,
            bytes=layer_bytes * 3 * d * dff + (layer_bytes * ((d + 2 * dff) + (2 * dff + dff) + (dff + d))) * tokens,
            kernels=3 * L,
            op_class="gemm",
            gemm_rows=tokens,
            gemm_shapes=((2 * dff, d), (d, dff)),
        ),
        # two RMSNorms per layer + the final one, each with the residual add before it (vLLM's fused_add_rms_norm):
        # read x and the residual, write the new residual and the normalized x; a few FLOPs per element
        "norms": Op(
            flops=(norm_count * 5.0 * d) * tokens,
            bytes=(norm_count * B * 4.0 * d) * tokens,
            kernels=norm_count,
            op_class="elementwise",
        ),
        "embedding": Op(flops=0.0, bytes=(B * 2.0 * d) * tokens, kernels=1, op_class="elementwise"),
        "lm_head": Op(
            flops=(2.0 * d * V) * lm_head_tokens,
            bytes=B * V * d + (B * (d + V)) * lm_head_tokens,
            kernels=1,
            op_class="gemm",
            gemm_rows=lm_head_tokens,
            gemm_shapes=((V, d),),
        ),
        "sampler": sampler(lm_head_tokens, shape.full_vocab, B, sampler_logit_passes),
    }


def sampler(n_seqs, vocab, dtype_bytes, logit_passes) -> Op:
    """Turning the LM head's logits into one token per sequence: the cast to fp32 (skipped when the logits are
    already fp32), then `logit_passes` fp32 reads or writes of n_seqs × vocab logits; about one FLOP per element
    per pass."""
    logits = n_seqs * vocab
    cast_bytes = np.where(np.asarray(dtype_bytes) < LOGIT_BYTES, dtype_bytes + LOGIT_BYTES, 0)
    return Op(
        flops=1.0 * logits * logit_passes,
        bytes=logits * (cast_bytes + LOGIT_BYTES * logit_passes),
        kernels=1 + int(np.ceil(logit_passes / 2)),  # the cast, then about one kernel per read-and-write pass
        op_class="elementwise",
    )


def prefill_attention(shape, n_seqs, input_len, kv_dtype_bytes) -> Op:
    """Causal self-attention over `input_len` tokens for `n_seqs` sequences, all layers (flash-style I/O)."""
    L, hq, hkv, dh, B = shape.n_layer, shape.n_head, shape.n_kv_head, shape.d_head, shape.dtype_bytes
    tokens = n_seqs * input_len
    return Op(
        flops=L * 2.0 * n_seqs * hq * dh * input_len**2,
        # rotary reads and writes q and k; attention reads q, k, v and writes out; K and V go into the cache (in the
        # cache's dtype)
        bytes=L * tokens * (B * (2 * (hq + hkv) * dh + (hq + 2 * hkv) * dh + hq * dh) + kv_dtype_bytes * 2 * hkv * dh),
        kernels=2 * L,  # rotary + attention
        op_class="attention_prefill",
    )


def decode_attention(shape, n_seqs, kv_dtype_bytes) -> DecodeAttention:
    """One decode step's attention for `n_seqs` sequences, all layers, as affine functions of kv_len."""
    L, hq, hkv, dh, B = shape.n_layer, shape.n_head, shape.n_kv_head, shape.d_head, shape.dtype_bytes
    return DecodeAttention(
        flops_per_kv=L * 4.0 * n_seqs * hq * dh,
        bytes_per_kv=L * kv_dtype_bytes * n_seqs * 2.0 * hkv * dh,
        # rotary on q and k (read + write), q in, out written, the new token's K and V appended to the cache
        bytes_fixed=L * n_seqs * (B * (2.0 * (hq + hkv) * dh + 2.0 * hq * dh) + kv_dtype_bytes * 2.0 * hkv * dh),
        kernels=2 * L,  # rotary + cache append fused, decode attention
    )
