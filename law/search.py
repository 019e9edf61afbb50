"""Constrained architecture search: maximize predicted throughput I_N(P) subject to predicted loss <= L_t.

This is the end product of arXiv 2510.18245 (Section 5). At the baseline's non-embedding budget N, layer count,
head size and vocabulary, every *realizable* architecture P = (d_model, n_kv_head, GQA, d_ff) is enumerated
(law/candidates.py). Each candidate gets a predicted loss (and its standard error when the law
carries a covariance) from a `ConditionalLaw` and a predicted throughput from `perfmodel.estimate`, both vectorized
over all candidates at once.

GQA: the law was fitted at a fixed GQA and has no GQA term, so by default every candidate keeps the baseline's GQA
group; `SearchSpace.gqa_groups` opens others, and then a second Surefire is searched over them (its loss effect is
not modelled and must be checked by training). At a d where the baseline's group leaves no realizable candidate,
that d is skipped and a note says so.
Loss target L_t: the baseline's predicted loss plus a delta (default 0: no worse than the baseline), or an absolute
level. The delta is the safer rule: at a fixed N and D, L_opt sets only the absolute level of every prediction.
Ties: predicted losses within the tolerance (the law's uncertainty) of the minimum are ties. Panda = among those
ties at the baseline's GQA, the candidate nearest the law's continuous optimum (x*, r*) in (ln x, ln r), as the
paper rounds its optimum to a realizable architecture; with a tolerance of 0 it is the strict minimum.
Surefire = the highest predicted throughput with loss <= L_t, at the baseline's GQA (and, GQA opened, over all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from law.candidates import SearchSpace, d_model_grid, enumerate_candidates, searched_gqa_groups
from law.conditional import ConditionalLaw
from perfmodel import Arch, ArchBatch, Hardware, estimate, get_calibration
from perfmodel.errors import ArchscaleInputError

# Chinchilla's compute-optimal rule of thumb, ~20 training tokens per parameter (Hoffmann et al. 2022,
# arXiv 2203.15556, Table 3). Used only when the user gives no token count; at a fixed N and D the L_opt(N, D)
# term cancels when candidates are ranked against the baseline.
CHINCHILLA_TOKENS_PER_PARAM = 20.0

# Default tie tolerance for a law without a covariance (the paper's coefficients, arXiv 2510.18245, come without
# one): the RMS error of the multiplicative law's progressive extrapolation on the shared morph_dataset.csv
# (open-lm-morph, 76 models), pooled over the held-out points of the last 3 steps (sizes 313M, 339M and 1B), as
# `archscale fit evaluate` prints it (law.evaluate.extrapolation_rmse; a test recomputes it).
DEFAULT_LOSS_TOLERANCE = 0.0269
DEFAULT_TOLERANCE_SOURCE = (
    "RMS error of progressive extrapolation on morph_dataset.csv (`archscale fit evaluate`, multiplicative, "
    "held-out points of the last 3 steps: 313M, 339M, 1B); the law has no covariance"
)


@dataclass(frozen=True)
class Deployment:
    """Where the architecture will be served (the throughput side of the objective)."""

    gpu: Hardware
    engine: str
    batch_size: int
    input_len: int
    output_len: int
    calibration_file: str | None = None  # `archscale calibrate` output; None: the priors
    kv_dtype_bytes: int | None = None  # the KV cache's element size; None: the architecture's dtype
    tp: int = 1  # tensor-parallel GPUs per replica (candidates vLLM cannot split this way are infeasible)
    dp: int = 1  # data-parallel replicas; batch_size is the whole batch
    max_prefill_tokens: int | None = None  # the engine's policy; None: the calibration's
    max_num_seqs: int | None = None
    cuda_graph_max_batch: int | None = None
    engine_version: str | None = None  # the vLLM/SGLang release whose scheduling defaults apply; None: the newest

    @property
    def workload(self) -> dict:
        """The keyword arguments `perfmodel.estimate` and `perfmodel.predict` take for the requests (the release,
        `engine_version`, goes to `get_calibration` and `predict` on its own)."""
        return {"batch_size": self.batch_size, "input_len": self.input_len, "output_len": self.output_len,
                "kv_dtype_bytes": self.kv_dtype_bytes, "tp": self.tp, "dp": self.dp,
                "max_prefill_tokens": self.max_prefill_tokens, "max_num_seqs": self.max_num_seqs,
                "cuda_graph_max_batch": self.cuda_graph_max_batch}  # fmt: skip


@dataclass
class Candidates:
    """All enumerated candidates as arrays (one entry per candidate) plus their predictions."""

    archs: ArchBatch
    n_params_non_embedding: np.ndarray  # [C]
    mlp_attn_ratio: np.ndarray  # [C]
    hidden_size_factor: np.ndarray  # [C]
    predicted_loss: np.ndarray  # [C]
    loss_stderr: np.ndarray | None  # [C]; None when the law has no covariance
    output_tokens_per_s: np.ndarray  # [C]; NaN where the deployment does not fit
    feasible: np.ndarray  # [C] bool

    def __len__(self) -> int:
        return int(self.predicted_loss.shape[0])

    def arch(self, index: int, name: str = "") -> Arch:
        return self.archs.arch(int(index), name=name)

    @property
    def gqa_group(self) -> np.ndarray:
        return self.archs.n_head // self.archs.n_kv_head


@dataclass
class SearchResult:
    baseline: Arch
    baseline_loss: float
    baseline_loss_stderr: float | None
    baseline_tokens_per_s: float
    loss_target: float
    loss_target_rule: str  # "delta" (baseline's predicted loss + loss_delta) or "absolute"
    loss_delta: float | None
    loss_tolerance: float
    loss_tolerance_source: str
    train_tokens: float
    candidates: Candidates
    panda_index: int
    surefire_index: int  # at the baseline's GQA
    surefire_gqa_index: int | None  # over every GQA group searched; None when GQA is held
    tie_indices: np.ndarray  # [T] candidates at the baseline's GQA within the tolerance of the minimum loss
    frontier_indices: np.ndarray  # [F], sorted by increasing loss
    x_opt: float | None
    r_opt: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def baseline_gqa(self) -> int:
        return self.baseline.gqa_group

    @property
    def min_loss(self) -> float:
        return float(np.min(self.candidates.predicted_loss[self.tie_indices]))


def evaluate_candidates(
    archs: ArchBatch, law: ConditionalLaw, deployment: Deployment, train_tokens: float
) -> Candidates:
    """Predicted loss and throughput for every candidate, vectorized."""
    n_params = archs.n_params_non_embedding.astype(np.float64)
    ratio = archs.mlp_attn_ratio
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a law that overflows: one error below
        loss, stderr = law.predict_loss(n_params, train_tokens, archs.d_model.astype(np.float64), ratio,
                                        return_stderr=True)  # fmt: skip
    if not np.all(np.isfinite(loss)) or (stderr is not None and not np.all(np.isfinite(stderr))):
        raise ArchscaleInputError(
            f"the law ({law.source or law.form}) predicts a non-finite loss or standard error for some "
            "architectures: check its coefficients"
        )
    calibration = get_calibration(deployment.gpu, deployment.engine, deployment.calibration_file,
                                  deployment.engine_version)  # fmt: skip
    result = estimate(archs, deployment.gpu, calibration=calibration, **deployment.workload)
    feasible = np.asarray(result.feasible, dtype=bool)
    tokens_per_s = np.where(feasible, result.output_tokens_per_s, np.nan)
    return Candidates(
        archs=archs,
        n_params_non_embedding=n_params,
        mlp_attn_ratio=ratio,
        hidden_size_factor=archs.d_model / np.sqrt(n_params),
        predicted_loss=np.asarray(loss, dtype=np.float64),
        loss_stderr=None if stderr is None else np.asarray(stderr, dtype=np.float64),
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
    loss_delta: float | None = None,
    loss_tolerance: float | None = None,
    train_tokens: float | None = None,
    space: SearchSpace | None = None,
) -> SearchResult:
    """Panda, Surefire (held and, GQA opened, searched) and the loss/throughput frontier around `baseline`.

    L_t = `loss_target` (absolute) or the baseline's predicted loss + `loss_delta` (default 0). `loss_tolerance`
    (default: one standard error of the lowest predicted loss when the law has a covariance, else
    DEFAULT_LOSS_TOLERANCE) decides which losses tie with the minimum. `space`: default `SearchSpace()`."""
    space = SearchSpace() if space is None else space
    if loss_target is not None and loss_delta is not None:
        raise ArchscaleInputError("give a loss target (absolute) or a loss delta (vs the baseline), not both")
    if loss_tolerance is not None and not (loss_tolerance >= 0 and math.isfinite(loss_tolerance)):
        raise ArchscaleInputError(f"the loss tolerance must be a finite number >= 0, got {loss_tolerance}")
    for what, value in (("loss target", loss_target), ("loss delta", loss_delta)):
        if value is not None and not math.isfinite(value):
            raise ArchscaleInputError(f"the {what} must be a finite number, got {value}")
    budget = baseline.n_params_non_embedding
    if train_tokens is None:
        train_tokens = CHINCHILLA_TOKENS_PER_PARAM * budget
    if not (train_tokens > 0 and math.isfinite(train_tokens)):
        raise ArchscaleInputError(f"training tokens must be a positive finite number, got {train_tokens:g}")
    # The baseline goes through the very same vectorized path as the candidates.
    base = evaluate_candidates(ArchBatch.from_archs([baseline]), law, deployment, train_tokens)
    baseline_loss = float(base.predicted_loss[0])
    if not baseline_loss > 0:
        raise ArchscaleInputError(
            f"the law predicts a loss of {baseline_loss:.4g} for the baseline: a loss must be positive (check the "
            "law's coefficients)"
        )
    rule = "absolute" if loss_target is not None else "delta"
    if loss_target is None:
        loss_delta = 0.0 if loss_delta is None else float(loss_delta)
        loss_target = baseline_loss + loss_delta

    candidates = evaluate_candidates(enumerate_candidates(baseline, space), law, deployment, train_tokens)
    loss, tokens_per_s = candidates.predicted_loss, candidates.output_tokens_per_s
    if not np.any(candidates.feasible):
        raise ArchscaleInputError(
            f"no candidate fits on {deployment.gpu.name} at batch {deployment.batch_size} "
            f"(in {deployment.input_len}, out {deployment.output_len})"
        )
    group = baseline.gqa_group
    if not np.any(candidates.gqa_group == group):
        raise ArchscaleInputError(
            f"the baseline's GQA {group} leaves no realizable candidate at this budget (>= {space.min_kv_heads} KV "
            "heads, r and N in range); lower --min-kv-heads or widen the search space"
        )
    held = candidates.feasible & (candidates.gqa_group == group)
    if not np.any(held):
        raise ArchscaleInputError(
            f"no candidate at the baseline's GQA {group} fits on {deployment.gpu.name} at batch "
            f"{deployment.batch_size} (in {deployment.input_len}, out {deployment.output_len})"
        )
    min_loss = float(np.min(loss[held]))
    if loss_tolerance is None:
        loss_tolerance, tolerance_source = default_tolerance(candidates, held)
    else:
        tolerance_source = "--loss-tolerance (given)"
    ties = np.flatnonzero(held & (loss <= min_loss + loss_tolerance))
    distance = optimum_distance(candidates, law)
    panda = ties[np.lexsort((-tokens_per_s[ties], loss[ties], distance[ties]))[0]]
    surefire = fastest_meeting(candidates, held, loss_target)
    if surefire is None:
        raise ArchscaleInputError(
            f"no candidate at the baseline's GQA {group} reaches predicted loss <= {loss_target:.4f}; the best "
            f"predicted is {min_loss:.4f}. Raise --loss-delta or --loss-target, or widen the search space"
        )
    opened = len(searched_gqa_groups(baseline, space)) > 1
    surefire_gqa = fastest_meeting(candidates, candidates.feasible, loss_target) if opened else None
    return SearchResult(
        baseline=baseline,
        baseline_loss=baseline_loss,
        baseline_loss_stderr=None if base.loss_stderr is None else float(base.loss_stderr[0]),
        baseline_tokens_per_s=float(base.output_tokens_per_s[0]),
        loss_target=float(loss_target),
        loss_target_rule=rule,
        loss_delta=loss_delta,
        loss_tolerance=float(loss_tolerance),
        loss_tolerance_source=tolerance_source,
        train_tokens=float(train_tokens),
        candidates=candidates,
        panda_index=int(panda),
        surefire_index=int(surefire),
        surefire_gqa_index=None if surefire_gqa is None else int(surefire_gqa),
        tie_indices=ties,
        frontier_indices=pareto_front(loss, tokens_per_s),
        x_opt=law.x_opt,
        r_opt=law.r_opt,
        notes=search_notes(baseline, space, candidates, law, opened),
    )


def default_tolerance(candidates: Candidates, held: np.ndarray) -> tuple[float, str]:
    """One standard error of the lowest predicted loss (law with a covariance), else DEFAULT_LOSS_TOLERANCE."""
    if candidates.loss_stderr is None:
        return DEFAULT_LOSS_TOLERANCE, DEFAULT_TOLERANCE_SOURCE
    best = np.flatnonzero(held)[np.argmin(candidates.predicted_loss[held])]
    source = "1 standard error of the lowest predicted loss (delta method over the law's fit covariance)"
    return float(candidates.loss_stderr[best]), source


def optimum_distance(candidates: Candidates, law: ConditionalLaw) -> np.ndarray:
    """Distance in (ln x, ln r) to the law's continuous optimum (x*, r*); an axis without an optimum counts 0."""
    squared = np.zeros(len(candidates))
    for value, optimum in ((candidates.hidden_size_factor, law.x_opt), (candidates.mlp_attn_ratio, law.r_opt)):
        if optimum is not None:
            squared += np.log(value / optimum) ** 2
    return np.sqrt(squared)


def fastest_meeting(candidates: Candidates, allowed: np.ndarray, loss_target: float) -> int | None:
    """The fastest allowed candidate with predicted loss <= loss_target (ties: lower loss); None if none."""
    meets = np.flatnonzero(allowed & (candidates.predicted_loss <= loss_target))
    if meets.size == 0:
        return None
    loss, tokens_per_s = candidates.predicted_loss[meets], candidates.output_tokens_per_s[meets]
    return int(meets[np.lexsort((loss, -tokens_per_s))[0]])


def search_notes(baseline: Arch, space: SearchSpace, candidates: Candidates, law: ConditionalLaw,
                 opened: bool) -> list[str]:  # fmt: skip
    group = baseline.gqa_group
    if opened:
        groups = ",".join(map(str, searched_gqa_groups(baseline, space)))
        notes = [
            f"GQA opened ({groups}): the law has no GQA term, so the loss effect of changing GQA is NOT modelled and "
            "must be checked by training; surefire-gqa is chosen for throughput only. Panda and surefire keep "
            f"the baseline's GQA {group}."
        ]
    else:
        notes = [
            f"Every candidate keeps the baseline's GQA {group} (the law was fitted at a fixed GQA and has no GQA "
            "term); --gqa 1,2,4,8,16 opens it."
        ]
    grid = d_model_grid(baseline, space)
    lost = np.setdiff1d(grid, candidates.archs.d_model[candidates.gqa_group == group])
    if lost.size:
        notes.append(
            f"GQA {group} cannot be kept at {lost.size} of {grid.size} d_model values ({lost.min()}..{lost.max()}): "
            f"no count of >= {space.min_kv_heads} KV heads leaves an MLP with r in "
            f"{space.mlp_attn_ratio_range[0]:g}..{space.mlp_attn_ratio_range[1]:g} within the budget; they are not "
            "searched at that GQA."
        )
    if law.x_opt is None and law.r_opt is None:
        notes.append("The law has no interior optimum (x*, r*): Panda is the lowest predicted loss among the ties.")
    notes.append(
        f"{len(candidates)} realizable candidates within ±{space.budget_tolerance:.0%} of "
        f"N = {baseline.n_params_non_embedding:.4g}; every one keeps n_layer = {baseline.n_layer}, "
        f"d_head = {baseline.d_head}, vocab."
    )
    return notes
