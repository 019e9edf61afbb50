"""Parameter and KV-cache arithmetic of a Llama-family decoder, written once for scalars and numpy arrays.

`Arch` (one architecture) and `ArchBatch` (many, as arrays) both call these, so the search and `predict` can
never disagree. Definitions follow arXiv 2510.18245 (Section 2) and DESIGN.md:
  attention params per layer = d·(n_head·d_head) [q] + 2·d·(n_kv_head·d_head) [k, v] + (n_head·d_head)·d [o]
  MLP params per layer (SwiGLU: gate, up, down) = 3·d·d_ff
  r = MLP params / attention params (weights only, biases excluded); GQA group = n_head / n_kv_head
  N = non-embedding parameters = layers·(attention + MLP + norms) + final norm
"""

from __future__ import annotations


def attention_weight_params(d_model, n_head, n_kv_head, d_head):
    """q, k, v, o projection weights of one layer."""
    return d_model * n_head * d_head * 2 + d_model * n_kv_head * d_head * 2


def attention_bias_params(n_head, n_kv_head, d_head, qkv_bias):
    """Qwen2-style q/k/v biases of one layer (0 when the model has none)."""
    return (n_head + 2 * n_kv_head) * d_head * qkv_bias


def mlp_params(d_model, d_ff):
    """SwiGLU gate, up and down projections of one layer."""
    return 3 * d_model * d_ff


def norm_params(d_model, d_head, qk_norm):
    """RMSNorm weights of one layer: before attention and before the MLP, + Qwen3's per-head q/k norms."""
    return 2 * d_model + 2 * d_head * qk_norm


def non_embedding_params(d_model, n_layer, n_head, n_kv_head, d_head, d_ff, qkv_bias, qk_norm):
    """N: all layers (attention with biases, MLP, norms) plus the final norm."""
    per_layer = (
        attention_weight_params(d_model, n_head, n_kv_head, d_head)
        + attention_bias_params(n_head, n_kv_head, d_head, qkv_bias)
        + mlp_params(d_model, d_ff)
        + norm_params(d_model, d_head, qk_norm)
    )
    return n_layer * per_layer + d_model


def embedding_params(d_model, vocab, tie_embeddings):
    """Input embedding, plus a separate LM head when the embeddings are not tied."""
    return d_model * vocab * (2 - tie_embeddings)


def mlp_attn_ratio(d_model, n_head, n_kv_head, d_head, d_ff):
    """r = MLP params / attention params of one layer."""
    return mlp_params(d_model, d_ff) / attention_weight_params(d_model, n_head, n_kv_head, d_head)


def kv_bytes_per_token(n_layer, n_kv_head, d_head, dtype_bytes):
    """KV-cache bytes one token occupies: K and V, every layer, every KV head."""
    return 2 * n_layer * n_kv_head * d_head * dtype_bytes
