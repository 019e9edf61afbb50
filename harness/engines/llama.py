"""A Llama-family decoder in plain torch, built from an `Arch` with random weights, serving from a paged KV cache.

What `Arch` accepts, this model runs: GQA with any group (n_head = group·n_kv_head), n_head·d_head ≠ d_model,
Qwen2's qkv biases, Qwen3's per-head q/k RMSNorm, tied or untied embeddings. Weights are random from a fixed seed,
as engines' dummy weights are (vLLM `load_format="dummy"`): throughput does not depend on their values.

- `LlamaWeights.random(arch, dtype, device, seed)`: one fused q/k/v matrix and one fused gate/up matrix per layer
  (as vLLM and gpt-fast fuse them), norms near 1.
- `PagedKVCache`: K and V pages [n_layer, num_blocks, block_size, n_kv_head, d_head]; a sequence owns the pages its
  block-table row lists; token at position p lives in page block_table[p // block_size], slot p % block_size.
- `LlamaModel.prefill`: causal SDPA over the prompt, K/V written into the pages, logits of the last position.
- `LlamaModel.decode`: one token per sequence; K/V appended at `positions`, attention over the pages up to `seq_lens`
  with `kernels.gqa_decode` (attention="triton") or SDPA over the pages (attention="torch": read in place when the
  engine laid them out in order, gathered otherwise). With a `DecodePlan` the triton
  path reads nothing on the host, so the engine can capture the step in a CUDA graph.
RoPE is Llama's (rotate-half, theta 500000, as `Arch.to_hf_config` writes); logits are fp32, as engines sample them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the torch convention)

from perfmodel.arch import Arch

ROPE_THETA = 500000.0  # Arch.to_hf_config writes rope_theta = 500000 (Llama 3)
RMS_NORM_EPS = 1e-5
INIT_STD = 0.02  # initializer_range in Arch.to_hf_config
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor  # [d]
    wqkv: torch.Tensor  # [(hq + 2·hkv)·dh, d]
    bqkv: torch.Tensor | None  # [(hq + 2·hkv)·dh] (Qwen2)
    q_norm: torch.Tensor | None  # [dh] (Qwen3)
    k_norm: torch.Tensor | None  # [dh] (Qwen3)
    wo: torch.Tensor  # [d, hq·dh]
    mlp_norm: torch.Tensor  # [d]
    w_gate_up: torch.Tensor  # [2·d_ff, d]
    w_down: torch.Tensor  # [d, d_ff]


@dataclass
class LlamaWeights:
    embed: torch.Tensor  # [V, d]
    layers: list[LayerWeights]
    final_norm: torch.Tensor  # [d]
    lm_head: torch.Tensor  # [V, d]; the embedding itself when tied

    @classmethod
    def random(cls, arch: Arch, dtype: torch.dtype, device, seed: int = 0) -> LlamaWeights:
        device = torch.device(device)
        generator = torch.Generator(device=device).manual_seed(seed)

        def normal(*shape, std=INIT_STD):
            return torch.randn(*shape, generator=generator, device=device, dtype=dtype) * std

        def norm(size):  # RMSNorm gains near 1, not exactly 1, so a test notices a norm applied to the wrong tensor
            return 1.0 + normal(size, std=0.1)

        d, hq, hkv, dh, d_ff = arch.d_model, arch.n_head, arch.n_kv_head, arch.d_head, arch.d_ff
        qkv_width = (hq + 2 * hkv) * dh
        layers = [
            LayerWeights(
                attn_norm=norm(d),
                wqkv=normal(qkv_width, d),
                bqkv=normal(qkv_width) if arch.qkv_bias else None,
                q_norm=norm(dh) if arch.qk_norm else None,
                k_norm=norm(dh) if arch.qk_norm else None,
                wo=normal(d, hq * dh),
                mlp_norm=norm(d),
                w_gate_up=normal(2 * d_ff, d),
                w_down=normal(d, d_ff),
            )
            for _ in range(arch.n_layer)
        ]
        embed = normal(arch.vocab, d)
        lm_head = embed if arch.tie_embeddings else normal(arch.vocab, d)
        return cls(embed=embed, layers=layers, final_norm=norm(d), lm_head=lm_head)

    def tensors(self) -> list[torch.Tensor]:
        """Every distinct weight tensor (a tied LM head counted once)."""
        found = {id(self.embed): self.embed, id(self.lm_head): self.lm_head, id(self.final_norm): self.final_norm}
        for layer in self.layers:
            for t in vars(layer).values():
                if t is not None:
                    found[id(t)] = t
        return list(found.values())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


class PagedKVCache:
    """K and V pages of every layer: [n_layer, num_blocks, block_size, n_kv_head, d_head] each."""

    def __init__(self, arch: Arch, num_blocks: int, block_size: int, dtype: torch.dtype, device):
        shape = (arch.n_layer, num_blocks, block_size, arch.n_kv_head, arch.d_head)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def slots(self, block_table: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Flat slot index (page·block_size + offset) of each position; positions [B] or [B, T] -> same shape."""
        squeeze = positions.dim() == 1
        pos = positions[:, None] if squeeze else positions  # [B, T]
        pages = block_table.long().gather(1, pos // self.block_size)  # [B, T]
        flat = pages * self.block_size + pos % self.block_size
        return flat[:, 0] if squeeze else flat

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v [..., n_kv_head, d_head] at `slots` [...] (no host sync: capturable in a CUDA graph)."""
        heads, head_dim = k.shape[-2:]
        flat_slots = slots.reshape(-1)
        self.k[layer].view(-1, heads, head_dim).index_copy_(0, flat_slots, k.reshape(-1, heads, head_dim))
        self.v[layer].view(-1, heads, head_dim).index_copy_(0, flat_slots, v.reshape(-1, heads, head_dim))


def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """RMSNorm in fp32, cast back before the gain (as transformers' LlamaRMSNorm)."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + RMS_NORM_EPS)
    return weight * normed.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, dtype: torch.dtype):
    """cos, sin [..., 1, head_dim] for positions [...] (rotate-half layout: each frequency twice)."""
    inv_freq = 1.0 / ROPE_THETA ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[..., None] * inv_freq  # [..., head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)[..., None, :]  # [..., 1, head_dim]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., heads, head_dim] rotated by position."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def causal_prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: int, scale: float):
    """Causal attention over a prompt, as the engine's prefill runs it: q [B, T, hq, dh], k and v [B, T, hkv, dh]
    -> [B, hq, T, dh]. K/V are repeated per query head so SDPA can pick its fused (flash) kernel on CUDA. The probe
    times this very function (harness/probe/prefill_attention.py)."""
    return F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2).repeat_interleave(group, dim=1),
        v.transpose(1, 2).repeat_interleave(group, dim=1),
        is_causal=True,
        scale=scale,
    )


class LlamaModel:
    def __init__(self, arch: Arch, weights: LlamaWeights, *, attention: str = "torch", max_prefill_tokens: int = 8192):
        if attention not in ("torch", "triton"):
            raise ValueError(f"attention must be 'torch' or 'triton', got {attention!r}")
        self.arch, self.weights, self.attention = arch, weights, attention
        self.max_prefill_tokens = max_prefill_tokens
        self.scale = 1.0 / math.sqrt(arch.d_head)

    def _qkv(self, layer: LayerWeights, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """h [..., d] -> q [..., hq, dh], k and v [..., hkv, dh], with qk-norm and RoPE applied to q and k."""
        a = self.arch
        qkv = F.linear(h, layer.wqkv, layer.bqkv)  # [..., (hq + 2·hkv)·dh]
        q, k, v = qkv.split([a.n_head * a.d_head, a.n_kv_head * a.d_head, a.n_kv_head * a.d_head], dim=-1)
        q = q.unflatten(-1, (a.n_head, a.d_head))
        k = k.unflatten(-1, (a.n_kv_head, a.d_head))
        v = v.unflatten(-1, (a.n_kv_head, a.d_head))
        if layer.q_norm is not None:
            q, k = rms_norm(q, layer.q_norm), rms_norm(k, layer.k_norm)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    @staticmethod
    def _mlp(layer: LayerWeights, h: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(h, layer.w_gate_up).chunk(2, dim=-1)  # [..., d_ff] each
        return F.linear(F.silu(gate) * up, layer.w_down)

    def _logits(self, x_last: torch.Tensor) -> torch.Tensor:
        """x_last [B, d] -> fp32 logits [B, V]."""
        return F.linear(rms_norm(x_last, self.weights.final_norm), self.weights.lm_head).float()

    @torch.inference_mode()
    def prefill(self, tokens: torch.Tensor, cache: PagedKVCache, block_table: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (positions 0..T-1 of B sequences) -> logits [B, V] of the last position.

        Runs in chunks of whole sequences of at most `max_prefill_tokens` tokens (at least one sequence), as an
        engine bounds its prefill batch, so activations stay small at large batch × long prompts (on the CPU a
        16k-token forward costs 25% more per token than an 8k one: its activations fall out of cache).
        """
        return torch.cat(list(self.prefill_forwards(tokens, cache, block_table)))

    @torch.inference_mode()
    def prefill_forwards(self, tokens: torch.Tensor, cache: PagedKVCache, block_table: torch.Tensor):
        """`prefill`, one forward at a time: yields the logits [b, V] of each forward's b sequences, in order, so
        a caller can time when each request's first token is ready."""
        batch, length = tokens.shape
        per_chunk = max(1, self.max_prefill_tokens // length)
        for start in range(0, batch, per_chunk):
            yield self._prefill_chunk(tokens[start : start + per_chunk], cache, block_table[start : start + per_chunk])

    def _prefill_chunk(self, tokens, cache, block_table):
        a, w = self.arch, self.weights
        batch, length = tokens.shape
        positions = torch.arange(length, device=tokens.device)
        cos, sin = rope_cos_sin(positions, a.d_head, w.embed.dtype)  # [T, 1, dh]
        slots = cache.slots(block_table, positions.expand(batch, length))  # [B, T]
        x = w.embed[tokens]  # [B, T, d]
        for index, layer in enumerate(w.layers):
            q, k, v = self._qkv(layer, rms_norm(x, layer.attn_norm), cos, sin)  # [B, T, h, dh]
            cache.write(index, slots, k, v)
            attn = causal_prefill_attention(q, k, v, a.gqa_group, self.scale)  # [B, hq, T, dh]
            x = x + F.linear(attn.transpose(1, 2).flatten(2), layer.wo)
            x = x + self._mlp(layer, rms_norm(x, layer.mlp_norm))
        return self._logits(x[:, -1])

    @torch.inference_mode()
    def decode(self, tokens, positions, cache: PagedKVCache, block_table, seq_lens, *, plan=None, max_kv_len=None,
               pages_in_order: bool = False):  # fmt: skip
        """One step: tokens [B] at positions [B] -> logits [B, V]; seq_lens [B] = positions + 1 (after the append).

        attention="triton" needs `plan` (kernels.gqa_decode.plan_gqa_decode) and reads nothing on the host;
        attention="torch" needs `max_kv_len` (a host int >= every seq_len) to size its read. `pages_in_order` is the
        caller's promise that block_table[b, j] = b·pages + j (as the engine allocates): the torch path then reads
        the pages in place instead of gathering them (a gather copies the whole KV cache every step).
        """
        a, w = self.arch, self.weights
        cos, sin = rope_cos_sin(positions, a.d_head, w.embed.dtype)  # [B, 1, dh]
        slots = cache.slots(block_table, positions)  # [B]
        x = w.embed[tokens]  # [B, d]
        for index, layer in enumerate(w.layers):
            q, k, v = self._qkv(layer, rms_norm(x, layer.attn_norm), cos, sin)  # [B, h, dh]
            cache.write(index, slots, k, v)
            if self.attention == "triton":
                from kernels.gqa_decode import gqa_decode_run

                attn = gqa_decode_run(
                    plan, q, cache.k[index], cache.v[index], seq_lens, block_table=block_table, scale=self.scale
                )  # [B, hq, dh]
            else:
                attn = self._torch_decode_attention(q, cache, index, block_table, seq_lens, max_kv_len, pages_in_order)
            x = x + F.linear(attn.flatten(1), layer.wo)
            x = x + self._mlp(layer, rms_norm(x, layer.mlp_norm))
        return self._logits(x)

    def _torch_decode_attention(self, q, cache, layer, block_table, seq_lens, max_kv_len, pages_in_order):
        """SDPA over each sequence's pages with a length mask: q [B, hq, dh] -> [B, hq, dh]. The query heads of one KV
        head ride as that head's rows (q [B, hkv, group, dh], as FlashInfer's and FlashDecoding's GQA decode does), so
        each KV head is read once: SDPA's enable_gqa would copy K and V out to every query head first (its math path,
        which CPU decode with a mask takes, repeat_interleaves them: group× the bytes)."""
        batch, pages = q.shape[0], -(-max_kv_len // cache.block_size)
        if pages_in_order:  # sequence b owns pages b·P .. b·P + P − 1: a view, no copy
            per_seq = block_table.shape[1]
            k = cache.k[layer][: batch * per_seq].unflatten(0, (batch, per_seq))[:, :pages].flatten(1, 2)
            v = cache.v[layer][: batch * per_seq].unflatten(0, (batch, per_seq))[:, :pages].flatten(1, 2)
        else:
            table = block_table[:, :pages].long()  # [B, pages]
            k, v = cache.k[layer][table].flatten(1, 2), cache.v[layer][table].flatten(1, 2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, hkv, pages·block_size, dh]
        valid = torch.arange(k.shape[2], device=q.device)[None, :] < seq_lens[:, None]  # [B, S]
        grouped = q.unflatten(1, (k.shape[1], -1))  # [B, hkv, group, dh]: query head h reads KV head h // group
        out = F.scaled_dot_product_attention(
            grouped, k, v, attn_mask=valid[:, None, None, :], scale=self.scale
        )  # [B, hkv, group, dh]
        return out.reshape(batch, *q.shape[1:])
