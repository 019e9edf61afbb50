"""Place given architectures (e.g. the paper's Panda-1B, Surefire-1B) against a finished search: their predicted
loss and throughput, their rank by loss among the candidates, whether they tie with the minimum (within the
search's tolerance), whether they meet the loss target, and how far they sit from the loss/throughput frontier.

Each architecture is scored with the same law, D and deployment as the search; its N may differ a little from the
baseline's budget (reported as a ratio), and its GQA may be one the search did not enumerate.
"""

from __future__ import annotations

import numpy as np

from law.conditional import ConditionalLaw
from law.search import Deployment, SearchResult, evaluate_candidates, optimum_distance
from perfmodel import Arch, ArchBatch


def best_speed_at(result: SearchResult, allowed: np.ndarray, loss: float) -> float | None:
    """The highest predicted output tokens/s among allowed candidates with predicted loss <= `loss`."""
    c = result.candidates
    meets = allowed & (c.predicted_loss <= loss)
    return float(np.max(c.output_tokens_per_s[meets])) if np.any(meets) else None


def place(result: SearchResult, law: ConditionalLaw, deployment: Deployment, archs: list[Arch]) -> list[dict]:
    """One dict per architecture: where it falls in the ranking, the tolerance band and the frontier."""
    c = result.candidates
    held = c.feasible & (c.gqa_group == result.baseline_gqa)
    rows = []
    for arch in archs:
        scored = evaluate_candidates(ArchBatch.from_archs([arch]), law, deployment, result.train_tokens)
        loss = float(scored.predicted_loss[0])
        tokens_per_s = float(scored.output_tokens_per_s[0]) if scored.feasible[0] else None  # None: does not fit
        frontier_held, frontier_all = best_speed_at(result, held, loss), best_speed_at(result, c.feasible, loss)
        rows.append({
            "name": arch.name,
            "d_model": arch.d_model,
            "n_head": arch.n_head,
            "n_kv_head": arch.n_kv_head,
            "d_ff": arch.d_ff,
            "gqa_group": arch.gqa_group,
            "mlp_attn_ratio": arch.mlp_attn_ratio,
            "hidden_size_factor": arch.hidden_size_factor,
            "n_params_ratio_vs_baseline": arch.n_params_non_embedding / result.baseline.n_params_non_embedding,
            "predicted_loss": loss,
            "predicted_loss_stderr": None if scored.loss_stderr is None else float(scored.loss_stderr[0]),
            "loss_delta_vs_min": loss - result.min_loss,
            "within_tolerance": loss <= result.min_loss + result.loss_tolerance,
            "meets_loss_target": loss <= result.loss_target,
            "loss_rank_held_gqa": int(np.sum(c.predicted_loss[held] < loss)) + 1,
            "n_held_gqa": int(held.sum()),
            "optimum_distance": float(optimum_distance(scored, law)[0]),
            "output_tokens_per_s": tokens_per_s,
            "throughput_ratio_vs_baseline": None if tokens_per_s is None else tokens_per_s / result.baseline_tokens_per_s,
            "frontier_tokens_per_s_at_loss_held_gqa": frontier_held,
            "frontier_tokens_per_s_at_loss": frontier_all,
        })  # fmt: skip
    return rows
