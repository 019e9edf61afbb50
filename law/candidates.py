"""The search's candidates: every realizable architecture at a baseline's budget (`enumerate_candidates`).

At the baseline's non-embedding budget N, layer count, head size and vocabulary, every architecture
P = (d_model, n_kv_head, GQA, d_ff) that a config.json can hold is enumerated:

- d_model over multiples of `d_multiple` with x = d/sqrt(N) in `hidden_size_factor_range`;
- for each GQA group g and each integer n_kv_head (n_head = g * n_kv_head, so heads always divide), d_ff is the
  multiple of `d_ff_multiple` that brings N back to the budget; candidates whose N misses the budget by more
  than `budget_tolerance`, or whose r = MLP/attention params leaves `mlp_attn_ratio_range`, are dropped.

Enumerating integers directly (instead of rounding a continuous (x, r) grid) means every candidate is a real
config.json and none is listed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfmodel import Arch, ArchBatch
from perfmodel.errors import ArchscaleInputError


@dataclass(frozen=True)
class SearchSpace:
    """Which architectures count as candidates (defaults follow the issue and the paper's r in [0.5, 5])."""

    hidden_size_factor_range: tuple[float, float] = (0.02, 0.2)
    mlp_attn_ratio_range: tuple[float, float] = (0.25, 8.0)
    gqa_groups: tuple[int, ...] | None = None  # None: the baseline's group only; else these plus the baseline's
    min_kv_heads: int = 2
    d_multiple: int = 64
    d_ff_multiple: int = 64
    budget_tolerance: float = 0.02

    def __post_init__(self) -> None:
        x_lo, x_hi = self.hidden_size_factor_range
        r_lo, r_hi = self.mlp_attn_ratio_range
        if not (0 < x_lo < x_hi) or not (0 < r_lo < r_hi):
            raise ArchscaleInputError("search ranges must be positive and increasing (lo < hi)")
        if self.gqa_groups is not None and (not self.gqa_groups or any(int(g) != g or g < 1 for g in self.gqa_groups)):
            raise ArchscaleInputError(f"GQA groups must be positive integers, got {self.gqa_groups}")
        if self.min_kv_heads < 1 or self.d_multiple < 1 or self.d_ff_multiple < 1:
            raise ArchscaleInputError("min_kv_heads, d_multiple and d_ff_multiple must be >= 1")
        if not 0 < self.budget_tolerance < 1:
            raise ArchscaleInputError("budget tolerance must be a fraction in (0, 1)")


def searched_gqa_groups(baseline: Arch, space: SearchSpace) -> tuple[int, ...]:
    """The GQA groups enumerated: the baseline's, plus those `space` opens."""
    return tuple(sorted({baseline.gqa_group, *(int(g) for g in space.gqa_groups or ())}))


def d_model_grid(baseline: Arch, space: SearchSpace) -> np.ndarray:
    """Every d_model multiple of `space.d_multiple` with d/sqrt(N) in the hidden-size range."""
    sqrt_budget = np.sqrt(baseline.n_params_non_embedding)
    x_lo, x_hi = space.hidden_size_factor_range
    m = space.d_multiple
    d_model = np.arange(int(np.ceil(x_lo * sqrt_budget / m)) * m, int(x_hi * sqrt_budget) + 1, m)
    return d_model[d_model > 0]


def enumerate_candidates(baseline: Arch, space: SearchSpace = SearchSpace()) -> ArchBatch:
    """Every realizable architecture at the baseline's budget, layer count, head size and vocabulary."""
    budget = baseline.n_params_non_embedding
    r_lo, r_hi = space.mlp_attn_ratio_range
    d_model = d_model_grid(baseline, space)
    if d_model.size == 0:
        raise ArchscaleInputError("no d_model multiple fits the hidden-size range at this budget")

    n_layer, d_head = baseline.n_layer, baseline.d_head
    # Budget left per layer for attention + MLP once the norms (2 per layer + the final one) are paid for.
    norm_per_layer = 2 * d_model + (2 * d_head if baseline.qk_norm else 0)  # [Dm]
    matmul_budget_per_layer = (budget - d_model) / n_layer - norm_per_layer  # [Dm]

    fields = []
    for group in searched_gqa_groups(baseline, space):
        # attention params per layer = 2 * d * d_head * (n_head + n_kv_head) = 2 d d_head n_kv (g + 1)
        attn_per_kv_head = 2 * d_model * d_head * (group + 1)  # [Dm]
        max_kv = int(np.max(matmul_budget_per_layer / ((1 + r_lo * (1 - space.budget_tolerance)) * attn_per_kv_head)))
        if max_kv < space.min_kv_heads:
            continue
        n_kv = np.arange(space.min_kv_heads, max_kv + 1)  # [K]
        attn = attn_per_kv_head[:, None] * n_kv[None, :]  # [Dm, K]
        if baseline.qkv_bias:
            attn = attn + (group + 2) * n_kv[None, :] * d_head
        mlp_target = matmul_budget_per_layer[:, None] - attn  # [Dm, K]
        d_ff = np.round(mlp_target / (3 * d_model[:, None]) / space.d_ff_multiple) * space.d_ff_multiple
        d_grid = np.broadcast_to(d_model[:, None], d_ff.shape)
        kv_grid = np.broadcast_to(n_kv[None, :], d_ff.shape)
        keep = d_ff >= space.d_ff_multiple
        fields.append((d_grid[keep], kv_grid[keep] * group, kv_grid[keep], d_ff[keep]))
    if not fields:
        raise ArchscaleInputError("no GQA group leaves room for the minimum number of KV heads at this budget")
    d_all, heads_all, kv_all, d_ff_all = (np.concatenate(column) for column in zip(*fields, strict=True))
    archs = ArchBatch.like(
        baseline,
        d_model=d_all.astype(np.int64),
        n_head=heads_all.astype(np.int64),
        n_kv_head=kv_all.astype(np.int64),
        d_ff=d_ff_all.astype(np.int64),
    )
    n_params = archs.n_params_non_embedding
    ratio = archs.mlp_attn_ratio
    keep = (np.abs(n_params / budget - 1) <= space.budget_tolerance) & (ratio >= r_lo) & (ratio <= r_hi)
    if not np.any(keep):
        raise ArchscaleInputError("no realizable candidate stays within the parameter budget and r range")
    return archs.select(keep)
