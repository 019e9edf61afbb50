"""Progressive extrapolation (arXiv 2510.18245, Section 4.2): fit on the smallest model sizes, predict the next.

Size groups are ordered by their median N. Step k fits L_opt (a Chinchilla law) and the conditional law on the
groups up to k and predicts every point of group k+1; it reports the MSE of the predicted loss and the Spearman
rank correlation between predicted and measured losses inside the held-out group (what a search needs: the
right order). L_opt is always refitted on the training groups only, so nothing of the held-out size leaks in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from law.chinchilla import fit_chinchilla
from law.conditional import fit_conditional
from perfmodel.errors import ArchscaleInputError


@dataclass
class ExtrapolationStep:
    train_groups: list[str]
    test_group: str
    n_train: int
    n_test: int
    mse: float
    spearman: float  # NaN when the held-out group has fewer than 3 points or constant predictions

    def to_dict(self) -> dict:
        return {**self.__dict__, "spearman": None if np.isnan(self.spearman) else self.spearman}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


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
        predicted = fit.law.predict_loss(*(columns[c][test] for c in ("N", "D", "d", "r")))
        measured = columns["loss"][test]
        steps.append(ExtrapolationStep(train_groups=list(names[:k]), test_group=str(names[k]),
                                       n_train=int(train.sum()), n_test=int(test.sum()),
                                       mse=float(np.mean((predicted - measured) ** 2)),
                                       spearman=spearman(predicted, measured)))  # fmt: skip
    return steps


def format_steps(steps: list[ExtrapolationStep]) -> str:
    from harness.tables import format_table

    body = [(f"<= {s.train_groups[-1]}", s.test_group, s.n_train, s.n_test, f"{s.mse:.2e}",
             "n/a" if np.isnan(s.spearman) else f"{s.spearman:.2f}") for s in steps]  # fmt: skip
    return format_table(("fit on sizes", "predict", "train pts", "test pts", "MSE", "Spearman"), body)
