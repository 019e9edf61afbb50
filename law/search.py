"""Constrained architecture search: maximize predicted throughput I_N(P) subject to predicted loss <= L_t.

This is the end product of arXiv 2510.18245 (Section 5). At the baseline's non-embedding budget N, layer count,
head size and vocabulary, every *realizable* architecture P = (d_model, n_kv_head, GQA, d_ff) is enumerated:

- d_model over multiples of `d_multiple` with x = d/sqrt(N) in `hidden_size_factor_range`;
- for each GQA group g and each integer n_kv_head (n_head = g * n_kv_head, so heads always divide), d_ff is the
  multiple of `d_ff_multiple` that brings N back to the budget; candidates whose N misses the budget by more
  than `budget_tolerance`, or whose r = MLP/attention params leaves `mlp_attn_ratio_range`, are dropped.

Enumerating integers directly (instead of rounding a continuous (x, r) grid) means every candidate is a real
config.json and none is listed twice. Each candidate gets a predicted loss from a `ConditionalLaw` and a
predicted throughput from `perfmodel.estimate`, both vectorized over all candidates at once.

Panda = the lowest predicted loss (ties, which the law's lack of a GQA term makes common, go to the faster one);
Surefire = the highest predicted throughput with loss <= L_t (L_t defaults to the baseline's predicted loss).
The law has no GQA term: GQA's effect on loss is not modelled (the paper tunes GQA by training variants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from law.conditional import ConditionalLaw
from perfmodel import Arch, ArchBatch, Hardware, estimate, get_calibration
from perfmodel.errors import ArchscaleInputError

# Chinchilla's compute-optimal rule of thumb, ~20 training tokens per parameter (Hoffmann et al. 2022,
# arXiv 2203.15556, Table 3). Used only when the user gives no token count; at a fixed N and D the L_opt(N, D)
# term cancels when candidates are ranked against the baseline.
CHINCHILLA_TOKENS_PER_PARAM = 20.0


@dataclass(frozen=True)
class SearchSpace:
    """Which architectures count as candidates (defaults follow the issue and the paper's r in [0.5, 5])."""

    hidden_size_factor_range: tuple[float, float] = (0.02, 0.2)
    mlp_attn_ratio_range: tuple[float, float] = (0.25, 8.0)
    gqa_groups: tuple[int, ...] = (1, 2, 4, 8, 16)
    min_kv_heads: int = 2
    d_multiple: int = 64
    d_ff_multiple: int = 64
    budget_tolerance: float = 0.02

    def __post_init__(self) -> None:
        x_lo, x_hi = self.hidden_size_factor_range
        r_lo, r_hi = self.mlp_attn_ratio_range
        if not (0 < x_lo < x_hi) or not (0 < r_lo < r_hi):
            raise ArchscaleInputError("search ranges must be positive and increasing (lo < hi)")
        if not self.gqa_groups or any(int(g) != g or g < 1 for g in self.gqa_groups):
            raise ArchscaleInputError(f"GQA groups must be positive integers, got {self.gqa_groups}")
        if self.min_kv_heads < 1 or self.d_multiple < 1 or self.d_ff_multiple < 1:
            raise ArchscaleInputError("min_kv_heads, d_multiple and d_ff_multiple must be >= 1")
        if not 0 < self.budget_tolerance < 1:
            raise ArchscaleInputError("budget tolerance must be a fraction in (0, 1)")


@dataclass(frozen=True)
class Deployment:
    """Where the architecture will be served (the throughput side of the objective)."""

    gpu: Hardware
    engine: str
    batch_size: int
    input_len: int
    output_len: int
    calibration_file: str | None = None  # `archscale calibrate` output; None: the priors

    @property
    def workload(self) -> dict:
        """The keyword arguments `perfmodel.estimate` and `perfmodel.predict` take for the requests."""
        return {"batch_size": self.batch_size, "input_len": self.input_len, "output_len": self.output_len}


@dataclass
class Candidates:
    """All enumerated candidates as arrays (one entry per candidate) plus their predictions."""

    archs: ArchBatch
    n_params_non_embedding: np.ndarray  # [C]
    mlp_attn_ratio: np.ndarray  # [C]
    hidden_size_factor: np.ndarray  # [C]
    predicted_loss: np.ndarray  # [C]
    output_tokens_per_s: np.ndarray  # [C]; NaN where the deployment does not fit
    feasible: np.ndarray  # [C] bool

    def __len__(self) -> int:
        return int(self.predicted_loss.shape[0])

    def arch(self, index: int, name: str = "") -> Arch:
        return self.archs.arch(int(index), name=name)


@dataclass
class SearchResult:
    baseline: Arch
    baseline_loss: float
    baseline_tokens_per_s: float
    loss_target: float
    train_tokens: float
    candidates: Candidates
    panda_index: int
    surefire_index: int
    frontier_indices: np.ndarray  # [F], sorted by increasing loss
    x_opt: float | None
    r_opt: float | None
    notes: list[str] = field(default_factory=list)


def enumerate_candidates(baseline: Arch, space: SearchSpace = SearchSpace()) -> ArchBatch:
    """Every realizable architecture at the baseline's budget, layer count, head size and vocabulary."""
    budget = baseline.n_params_non_embedding
    sqrt_budget = np.sqrt(budget)
    x_lo, x_hi = space.hidden_size_factor_range
    r_lo, r_hi = space.mlp_attn_ratio_range
    m = space.d_multiple
    d_model = np.arange(int(np.ceil(x_lo * sqrt_budget / m)) * m, int(x_hi * sqrt_budget) + 1, m)
    d_model = d_model[d_model > 0]
    if d_model.size == 0:
        raise ArchscaleInputError("no d_model multiple fits the hidden-size range at this budget")

    n_layer, d_head = baseline.n_layer, baseline.d_head
    # Budget left per layer for attention + MLP once the norms (2 per layer + the final one) are paid for.
    norm_per_layer = 2 * d_model + (2 * d_head if baseline.qk_norm else 0)  # [Dm]
    matmul_budget_per_layer = (budget - d_model) / n_layer - norm_per_layer  # [Dm]

    fields = []
    for group in sorted(set(int(g) for g in space.gqa_groups)):
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


def evaluate_candidates(
    archs: ArchBatch, law: ConditionalLaw, deployment: Deployment, train_tokens: float
) -> Candidates:
    """Predicted loss and throughput for every candidate, vectorized."""
    n_params = archs.n_params_non_embedding.astype(np.float64)
    ratio = archs.mlp_attn_ratio
    loss = law.predict_loss(n_params, train_tokens, archs.d_model.astype(np.float64), ratio)
    calibration = get_calibration(deployment.gpu, deployment.engine, deployment.calibration_file)
    result = estimate(archs, deployment.gpu, calibration=calibration, **deployment.workload)
    feasible = np.asarray(result.feasible, dtype=bool)
    tokens_per_s = np.where(feasible, result.output_tokens_per_s, np.nan)
    return Candidates(
        archs=archs,
        n_params_non_embedding=n_params,
        mlp_attn_ratio=ratio,
        hidden_size_factor=archs.d_model / np.sqrt(n_params),
        predicted_loss=np.asarray(loss, dtype=np.float64),
        output_tokens_per_s=tokens_per_s,
        feasible=feasible,
    )


def pareto_front(loss: np.ndarray, tokens_per_s: np.ndarray) -> np.ndarray:
    """Indices of the candidates no other candidate beats on both loss (lower) and throughput (higher)."""
    valid = np.flatnonzero(np.isfinite(loss) & np.isfinite(tokens_per_s))
    order = valid[np.lexsort((-tokens_per_s[valid], loss[valid]))]  # by loss, then fastest first
    best_so_far = np.maximum.accumulate(tokens_per_s[order])
    improves = np.empty(order.shape, dtype=bool)
    improves[:1] = True
    improves[1:] = tokens_per_s[order[1:]] > best_so_far[:-1]
    return order[improves]


def search(
    baseline: Arch,
    law: ConditionalLaw,
    deployment: Deployment,
    *,
    loss_target: float | None = None,
    train_tokens: float | None = None,
    space: SearchSpace = SearchSpace(),
) -> SearchResult:
    """Panda, Surefire and the loss/throughput frontier around `baseline` for `deployment`."""
    budget = baseline.n_params_non_embedding
    if train_tokens is None:
        train_tokens = CHINCHILLA_TOKENS_PER_PARAM * budget
    if train_tokens <= 0:
        raise ArchscaleInputError(f"training tokens must be positive, got {train_tokens:g}")
    # The baseline goes through the very same vectorized path as the candidates.
    base = evaluate_candidates(ArchBatch.from_archs([baseline]), law, deployment, train_tokens)
    baseline_loss = float(base.predicted_loss[0])
    if loss_target is None:
        loss_target = baseline_loss

    candidates = evaluate_candidates(enumerate_candidates(baseline, space), law, deployment, train_tokens)
    loss, tokens_per_s = candidates.predicted_loss, candidates.output_tokens_per_s
    if not np.any(candidates.feasible):
        raise ArchscaleInputError(
            f"no candidate fits on {deployment.gpu.name} at batch {deployment.batch_size} "
            f"(in {deployment.input_len}, out {deployment.output_len})"
        )
    feasible = np.flatnonzero(candidates.feasible)
    panda = feasible[np.lexsort((-tokens_per_s[feasible], loss[feasible]))[0]]
    meets_target = feasible[loss[feasible] <= loss_target]
    if meets_target.size == 0:
        raise ArchscaleInputError(
            f"no candidate reaches predicted loss <= {loss_target:.4f}; the best predicted is "
            f"{loss[panda]:.4f} (Panda). Raise --loss-target or widen the search space"
        )
    surefire = meets_target[np.lexsort((loss[meets_target], -tokens_per_s[meets_target]))[0]]

    notes = [
        "GQA's effect on loss is not modelled by the law (no GQA term); GQA is chosen for throughput only.",
        f"{len(candidates)} realizable candidates within ±{space.budget_tolerance:.0%} of N = {budget:.4g}.",
    ]
    notes.append(f"Every candidate keeps n_layer = {baseline.n_layer}, d_head = {baseline.d_head}, vocab.")
    return SearchResult(
        baseline=baseline,
        baseline_loss=baseline_loss,
        baseline_tokens_per_s=float(base.output_tokens_per_s[0]),
        loss_target=float(loss_target),
        train_tokens=float(train_tokens),
        candidates=candidates,
        panda_index=int(panda),
        surefire_index=int(surefire),
        frontier_indices=pareto_front(loss, tokens_per_s),
        x_opt=law.x_opt,
        r_opt=law.r_opt,
        notes=notes,
    )
