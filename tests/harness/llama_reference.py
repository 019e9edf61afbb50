"""A deliberately plain Llama forward for the engine tests: full recompute over the whole token sequence, no KV
cache, explicit per-head loops and an explicit causal mask, RoPE written pair by pair. Shares only the weights."""

from __future__ import annotations

import math

import torch


def _rms(x, weight, eps=1e-5):
    return weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _rope(x, positions, theta=500000.0):
    """x [T, heads, dh]: pair (i, i + dh/2) rotated by angle position / theta^(2i/dh)."""
    head_dim = x.shape[-1]
    half = head_dim // 2
    out = torch.empty_like(x)
    for i in range(half):
        angle = positions.double() / theta ** (2 * i / head_dim)  # [T]
        cos, sin = angle.cos()[:, None], angle.sin()[:, None]
        a, b = x[..., i].double(), x[..., i + half].double()
        out[..., i] = (a * cos - b * sin).to(x.dtype)
        out[..., i + half] = (b * cos + a * sin).to(x.dtype)
    return out


def reference_logits(arch, weights, tokens: list[int]) -> torch.Tensor:
    """fp32 logits [V] at the last of `tokens` (one sequence), computed from scratch in float64."""
    w = weights
    T = len(tokens)
    hq, hkv, dh, d_ff = arch.n_head, arch.n_kv_head, arch.d_head, arch.d_ff
    positions = torch.arange(T)
    x = w.embed.double()[torch.tensor(tokens)]  # [T, d]
    for layer in w.layers:
        h = _rms(x, layer.attn_norm.double())
        qkv = h @ layer.wqkv.double().T
        if layer.bqkv is not None:
            qkv = qkv + layer.bqkv.double()
        q = qkv[:, : hq * dh].reshape(T, hq, dh)
        k = qkv[:, hq * dh : (hq + hkv) * dh].reshape(T, hkv, dh)
        v = qkv[:, (hq + hkv) * dh :].reshape(T, hkv, dh)
        if layer.q_norm is not None:
            q, k = _rms(q, layer.q_norm.double()), _rms(k, layer.k_norm.double())
        q, k = _rope(q, positions), _rope(k, positions)
        heads = []
        for head in range(hq):
            kv_head = head // (hq // hkv)
            scores = q[:, head] @ k[:, kv_head].T / math.sqrt(dh)  # [T, T]
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            heads.append(scores.softmax(-1) @ v[:, kv_head])  # [T, dh]
        x = x + torch.cat(heads, dim=-1) @ layer.wo.double().T
        h = _rms(x, layer.mlp_norm.double())
        gate_up = h @ layer.w_gate_up.double().T
        gate, up = gate_up[:, :d_ff], gate_up[:, d_ff:]
        x = x + (gate * torch.sigmoid(gate) * up) @ layer.w_down.double().T
    return (_rms(x[-1], w.final_norm.double()) @ w.lm_head.double().T).float()
