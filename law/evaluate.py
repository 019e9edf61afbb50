"""Progressive extrapolation (arXiv 2510.18245, Section 4.2): fit on the smallest model sizes, predict the next.

Size groups are ordered by their median N. Step k fits L_opt (a Chinchilla law) and the conditional law on the
groups up to k and predicts every point of group k+1; it reports the MSE and RMS error of the predicted loss and two
Spearman rank correlations between predicted and measured losses: over the whole held-out size (several token
budgets, so it mostly checks the order of D) and per (size, token budget) group, averaged over the groups with at
least 3 points (the order of architectures at one N and D: what a search needs, and what the paper's Spearman
compares, since its held-out sets are architecture variants of one size). L_opt is always refitted on the training
groups only, so nothing of the held-out size leaks in.

`extrapolation_rmse` pools the errors of the last steps: the search's default loss tolerance when a law has no
covariance (law/search.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from law.chinchilla import fit_chinchilla
from law.conditional import fit_conditional
from perfmodel.errors import ArchscaleInputError

TOLERANCE_STEPS = 3  # the last steps (held-out sizes 313M, 339M and 1B in morph_dataset.csv), nearest 1B-3B searches


@dataclass
class ExtrapolationStep:
    train_groups: list[str]
    test_group: str
    n_train: int
    n_test: int
    mse: float
    spearman: float  # over the whole held-out size; NaN when it has fewer than 3 points or constant predictions
    spearman_per_group: float  # mean over (size, D) groups of >= 3 points; NaN when there is none
    n_spearman_groups: int

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.mse))

    def to_dict(self) -> dict:
        out = {**self.__dict__, "rmse": self.rmse}
        for key in ("spearman", "spearman_per_group"):
            out[key] = None if np.isnan(out[key]) else out[key]
        return out


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def spearman_per_group(predicted, measured, tokens) -> tuple[float, int]:
    """Mean Spearman over the token budgets (one per D) that have at least 3 points, and how many there were."""
    scores = [spearman(predicted[tokens == D], measured[tokens == D]) for D in np.unique(tokens)]
    scores = [s for s in scores if not np.isnan(s)]
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


def progressive_extrapolation(columns: dict, *, form: str = "multiplicative", min_train_groups: int = 3):
    """One `ExtrapolationStep` per held-out size group (columns: N, D, d, r, loss, group)."""
    if "group" not in columns:
        raise ArchscaleInputError("progressive extrapolation needs a size-group column (size_group or group)")
    groups = columns["group"]
    names = sorted(set(groups), key=lambda g: float(np.median(columns["N"][groups == g])))
    if len(names) < min_train_groups + 1:
        raise ArchscaleInputError(
            f"progressive extrapolation needs at least {min_train_groups + 1} size groups, got {len(names)}"
        )
    steps = []
    for k in range(min_train_groups, len(names)):
        train = np.isin(groups, names[:k])
        test = groups == names[k]
        lopt = fit_chinchilla(columns["N"][train], columns["D"][train], columns["loss"][train], n_starts=10).law
        fit = fit_conditional(*(columns[c][train] for c in ("N", "D", "d", "r", "loss")), form=form, lopt=lopt)
        measured = columns["loss"][test]
        with np.errstate(all="ignore"):
            predicted = fit.law.predict_loss(*(columns[c][test] for c in ("N", "D", "d", "r")))
            mse = float(np.mean((predicted - measured) ** 2))
        if not (np.all(np.isfinite(predicted)) and np.isfinite(mse)):
            raise ArchscaleInputError(f"the law fitted on sizes up to {names[k - 1]} predicts non-finite losses for "
                                      f"size {names[k]}: check the data's ranges")  # fmt: skip
        per_group, n_groups = spearman_per_group(predicted, measured, columns["D"][test])
        steps.append(ExtrapolationStep(train_groups=list(names[:k]), test_group=str(names[k]),
                                       n_train=int(train.sum()), n_test=int(test.sum()),
                                       mse=mse,
                                       spearman=spearman(predicted, measured), spearman_per_group=per_group,
                                       n_spearman_groups=n_groups))  # fmt: skip
    return steps


def extrapolation_rmse(steps: list[ExtrapolationStep], last: int = TOLERANCE_STEPS) -> float:
    """RMS error of the predicted loss over every held-out point of the `last` steps, pooled."""
    chosen = steps[-last:]
    return float(np.sqrt(sum(s.mse * s.n_test for s in chosen) / sum(s.n_test for s in chosen)))
