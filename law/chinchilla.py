"""Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta, fitted as Hoffmann et al. 2022 (arXiv 2203.15556, App. D.2)
and the Epoch replication (Besiroglu et al. 2024, arXiv 2404.10102) do it.

Fit in log space with the log-sum-exp form log L = LSE(a - alpha·log N, b - beta·log D, e), where A = e^a,
B = e^b, E = e^e; minimize the Huber loss (delta = 1e-3) of log-residuals with L-BFGS from a grid of starting
points and keep the best. The grid is scored in one vectorized pass and L-BFGS starts from its best points.
Bootstrap (resampling points) gives confidence intervals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from perfmodel.errors import ArchscaleInputError

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, App. D.2
# The replication's grid of initializations (Besiroglu et al. 2024, Section 3): e, a, b, alpha, beta.
INIT_GRID = {
    "e": np.arange(-1.0, 1.51, 0.5),
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
}


@dataclass(frozen=True)
class ChinchillaLaw:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, N, D):
        """Loss at N parameters and D tokens (arrays broadcast)."""
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    def to_dict(self) -> dict:
        return {name: float(getattr(self, name)) for name in PARAM_NAMES}


@dataclass
class ChinchillaFit:
    law: ChinchillaLaw
    mse: float  # mean squared error of the loss itself
    huber_objective: float
    n_points: int
    confidence_intervals: dict | None = None  # name -> (2.5%, 97.5%) from the bootstrap
    n_bootstrap: int = 0

    def to_dict(self) -> dict:
        out = {**self.law.to_dict(), "mse": self.mse, "n_points": self.n_points}
        if self.confidence_intervals:
            out["ci95"] = {k: list(v) for k, v in self.confidence_intervals.items()}
        return out

    def report(self) -> str:
        lines = ["Chinchilla fit: L = E + A/N^alpha + B/D^beta  (Huber delta 1e-3 on log L, L-BFGS, grid of starts)"]
        for name in PARAM_NAMES:
            value = getattr(self.law, name)
            ci = ""
            if self.confidence_intervals:
                lo, hi = self.confidence_intervals[name]
                ci = f"   95% CI [{lo:.4g}, {hi:.4g}] ({self.n_bootstrap} bootstrap fits)"
            lines.append(f"  {name:<6} = {value:12.6g}{ci}")
        lines.append(f"  points = {self.n_points}   MSE(loss) = {self.mse:.3e}")
        return "\n".join(lines)


def _objective(theta, log_n, log_d, log_loss, delta):
    """Huber loss of log-residuals and its gradient, theta = (e, a, b, alpha, beta)."""
    e, a, b, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # [3, P]
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    lse = top + np.log(weights.sum(axis=0))
    weights /= weights.sum(axis=0)
    residual = lse - log_loss
    small = np.abs(residual) <= delta
    loss = np.where(small, 0.5 * residual**2, delta * (np.abs(residual) - 0.5 * delta)).sum()
    dloss = np.where(small, residual, delta * np.sign(residual))
    grad = np.array(
        [
            (dloss * weights[2]).sum(),
            (dloss * weights[0]).sum(),
            (dloss * weights[1]).sum(),
            -(dloss * weights[0] * log_n).sum(),
            -(dloss * weights[1] * log_d).sum(),
        ]
    )
    return loss, grad


def _grid_objective(grid, log_n, log_d, log_loss, delta):
    """Huber objective of every grid row at once: grid [G, 5] -> [G]."""
    e, a, b, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    lse = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    residual = np.abs(lse - log_loss)
    return np.where(residual <= delta, 0.5 * residual**2, delta * (residual - 0.5 * delta)).sum(axis=1)


def _minimize(log_n, log_d, log_loss, starts, delta):
    from scipy.optimize import minimize

    best = None
    for start in starts:
        result = minimize(_objective, start, args=(log_n, log_d, log_loss, delta), jac=True, method="L-BFGS-B",
                          options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
        if best is None or result.fun < best.fun:
            best = result
    return best


def _to_law(theta) -> ChinchillaLaw:
    e, a, b, alpha, beta = theta
    return ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                         beta=float(beta))  # fmt: skip


def fit_chinchilla(N, D, loss, *, delta: float = HUBER_DELTA, n_starts: int = 40, bootstrap: int = 0,
                   seed: int = 0) -> ChinchillaFit:  # fmt: skip
    """Fit E, A, B, alpha, beta; `bootstrap` > 0 adds 95% percentile intervals from that many refits."""
    N, D, loss = (np.asarray(v, dtype=np.float64) for v in (N, D, loss))
    if N.size < 5:
        raise ArchscaleInputError(f"a Chinchilla fit has 5 parameters and needs at least 5 points, got {N.size}")
    if np.unique(N).size < 2 or np.unique(D).size < 2:
        raise ArchscaleInputError("a Chinchilla fit needs at least 2 distinct model sizes and 2 distinct token counts")
    log_n, log_d, log_loss = np.log(N), np.log(D), np.log(loss)
    grid = np.array(list(itertools.product(*INIT_GRID.values())))  # [G, 5] in (e, a, b, alpha, beta) order
    # Data far outside any real model (N or D near 1e300, a loss of 1e-200) overflows inside the optimizer: that is
    # one clear error below, not numpy warnings on stderr.
    with np.errstate(all="ignore"):
        scores = _grid_objective(grid, log_n, log_d, log_loss, delta)
        starts = grid[np.argsort(scores)[:n_starts]]
        best = _minimize(log_n, log_d, log_loss, starts, delta)
        law = _to_law(best.x)
        mse = float(np.mean((law.predict(N, D) - loss) ** 2))
    if not all(np.isfinite([*law.to_dict().values(), mse, best.fun])):
        raise ArchscaleInputError(
            "the Chinchilla fit found no finite optimum on this data: check that N (parameters), D (tokens) and the "
            "loss (nats) are in plausible ranges"
        )
    fit = ChinchillaFit(law=law, mse=mse, huber_objective=float(best.fun), n_points=int(N.size))
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        samples = []
        with np.errstate(all="ignore"):
            for _ in range(bootstrap):
                pick = rng.integers(0, N.size, N.size)
                refit = _minimize(log_n[pick], log_d[pick], log_loss[pick], [best.x], delta)
                samples.append([getattr(_to_law(refit.x), name) for name in PARAM_NAMES])
            lo, hi = np.percentile(np.array(samples), [2.5, 97.5], axis=0)
        fit.confidence_intervals = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(PARAM_NAMES)}
        fit.n_bootstrap = bootstrap
    return fit
