"""The conditional scaling law of arXiv 2510.18245 (Section 4): loss given N, D, hidden size d and MLP/attention r.

  x = d / sqrt(N)   (N = non-embedding parameters)
  multiplicative:  L = (a0 + a1·ln x + a2/x) · (b0 + b1·ln r + b2/r) · L_opt(N, D)
  additive:        L = (a0 + a1·ln x + a2/x) + (b1·ln r + b2/r) + L_opt(N, D)
Each factor is U-shaped with its minimum at x* = a2/a1 and r* = b2/b1 when a1, a2 (b1, b2) > 0.

Fitting (Levenberg–Marquardt, scipy.optimize.least_squares(method="lm")): the multiplicative form is only
defined up to a scale shared by the two factors, so the fit fixes b0 = 1 (the paper's own b0 = 0.387 is the
same law with the scale moved; optima and predictions are unchanged). When r barely varies in the data, the r
factor cannot be identified: the fit then holds it constant (b1 = b2 = 0), says so, and reports no r*.
L_opt is a Chinchilla law (fitted on the same data by default), or given per point.

Uncertainty: a fitted law carries the covariance of its coefficients (sigma^2 (J^T J)^-1 from the fit's Jacobian),
and `predict_loss(..., return_stderr=True)` propagates it to a standard error per prediction (delta method,
L_opt held fixed). The paper's coefficients come without a covariance: their standard error is None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from law.chinchilla import PARAM_NAMES, ChinchillaLaw
from perfmodel.atomic_io import JSON_ERRORS, json_failure, json_type, write_atomic
from perfmodel.errors import ArchscaleInputError

FORMS = ("multiplicative", "additive")
COEFFICIENTS = ("a0", "a1", "a2", "b0", "b1", "b2")
MIN_R_SPREAD = 0.5  # max(ln r) - min(ln r) below this and the r factor is not identifiable
PAPER_LAW_PATH = Path(__file__).with_name("data") / "paper_law.json"


@dataclass(frozen=True)
class ConditionalLaw:
    form: str
    a0: float
    a1: float
    a2: float
    b0: float
    b1: float
    b2: float
    lopt: ChinchillaLaw | None = None
    source: str = ""
    covariance: tuple[tuple[float, ...], ...] | None = None  # [6, 6] over COEFFICIENTS; 0 rows for fixed ones

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ArchscaleInputError(f"law form must be one of {', '.join(FORMS)}, got '{self.form}'")

    def x_factor(self, x):
        return self.a0 + self.a1 * np.log(x) + self.a2 / x

    def r_factor(self, r):
        return self.b0 * (self.form == "multiplicative") + self.b1 * np.log(r) + self.b2 / r

    def architecture_factor(self, x, r):
        """What the architecture contributes: a ratio to L_opt (multiplicative) or an offset (additive)."""
        if self.form == "multiplicative":
            return self.x_factor(x) * self.r_factor(r)
        return self.x_factor(x) + self.r_factor(r)

    def predict_loss(self, N, D, d, r, lopt_values=None, *, return_stderr: bool = False):
        """Loss for arrays of N (non-embedding), D, d and r; `lopt_values` overrides the law's L_opt(N, D).

        With `return_stderr`, returns (loss, standard error of the loss by the delta method over the coefficients'
        covariance, L_opt held fixed); the standard error is None when the law has no covariance."""
        if lopt_values is None:
            if self.lopt is None:
                raise ArchscaleInputError("this law has no L_opt(N, D); give L_opt values or a Chinchilla law")
            lopt_values = self.lopt.predict(N, D)
        x = np.asarray(d, dtype=np.float64) / np.sqrt(N)
        factor = self.architecture_factor(x, r)
        loss = factor * lopt_values if self.form == "multiplicative" else factor + lopt_values
        if not return_stderr:
            return loss
        if self.covariance is None:
            return loss, None
        gradient = self.coefficient_gradient(x, r, lopt_values)  # [..., 6]
        variance = np.einsum("...i,ij,...j->...", gradient, np.asarray(self.covariance), gradient)
        return loss, np.sqrt(np.clip(variance, 0.0, None))

    def coefficient_gradient(self, x, r, lopt_values):
        """d loss / d (a0, a1, a2, b0, b1, b2) at x = d/sqrt(N) and r: [..., 6]."""
        x, r, lopt_values = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, r, lopt_values)))
        x_terms = np.stack([np.ones_like(x), np.log(x), 1.0 / x], axis=-1)  # d X / d (a0, a1, a2)
        r_terms = np.stack([np.ones_like(r), np.log(r), 1.0 / r], axis=-1)  # d R / d (b0, b1, b2)
        if self.form == "multiplicative":
            x_part = x_terms * (self.r_factor(r) * lopt_values)[..., None]
            r_part = r_terms * (self.x_factor(x) * lopt_values)[..., None]
        else:
            x_part, r_part = x_terms, r_terms * np.array([0.0, 1.0, 1.0])  # b0 is not a term of the additive form
        return np.concatenate([x_part, r_part], axis=-1)

    @property
    def x_is_u_shaped(self) -> bool:
        return self.a1 > 0 and self.a2 > 0

    @property
    def r_is_u_shaped(self) -> bool:
        return self.b1 > 0 and self.b2 > 0

    @property
    def x_opt(self) -> float | None:
        """x* = a2/a1, the minimum of the x factor; None when the factor is monotone (no interior minimum)."""
        return self.a2 / self.a1 if self.x_is_u_shaped else None

    @property
    def r_opt(self) -> float | None:
        return self.b2 / self.b1 if self.r_is_u_shaped else None

    def to_dict(self) -> dict:
        out = {name: float(getattr(self, name)) for name in COEFFICIENTS}
        out.update(form=self.form, source=self.source, x_opt=self.x_opt, r_opt=self.r_opt)
        out["lopt"] = None if self.lopt is None else self.lopt.to_dict()
        out["covariance"] = None if self.covariance is None else [list(row) for row in self.covariance]
        return out

    def save(self, path: str | Path) -> None:
        """Write the law as JSON, atomically (a failed write leaves an existing file as it was)."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ConditionalLaw:
        """A law written by `save`; anything else is one `ArchscaleInputError` saying what is wrong."""
        path = Path(path)
        not_a_law = f"{path}: not a law saved by `archscale fit conditional`"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArchscaleInputError(f"{path}: no such law file") from None
        except IsADirectoryError:
            raise ArchscaleInputError(f"{path} is a folder, not a law file") from None
        except UnicodeDecodeError:
            raise ArchscaleInputError(f"{not_a_law} (not UTF-8 text)") from None
        except OSError as exc:
            raise ArchscaleInputError(f"{path}: cannot read the law file ({exc.strerror or exc})") from None
        try:
            raw = json.loads(text)
        except JSON_ERRORS as exc:
            raise ArchscaleInputError(f"{not_a_law} ({json_failure(exc)})") from None
        if not isinstance(raw, dict):
            raise ArchscaleInputError(f"{not_a_law} (it holds a JSON {json_type(raw)}, not an object)")

        def number(table: dict, key: str, where: str = "", positive: bool = False) -> float:
            value = table.get(key)
            try:
                ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
            except OverflowError:  # an integer beyond any float
                ok = False
            if not ok or (positive and not value > 0):
                kind = "a positive finite number" if positive else "a finite number"
                got = "nothing" if key not in table else f"{value!r:.40}"
                raise ArchscaleInputError(f"{not_a_law} ('{where}{key}' must be {kind}, got {got})")
            return float(value)

        form = raw.get("form")
        if form not in FORMS:
            raise ArchscaleInputError(f"{not_a_law} ('form' must be one of {', '.join(FORMS)}, got {form!r:.40})")
        coefficients = {name: number(raw, name) for name in COEFFICIENTS}
        lopt = raw.get("lopt")
        if lopt is not None:
            if not isinstance(lopt, dict) or set(lopt) - set(PARAM_NAMES):
                raise ArchscaleInputError(
                    f"{not_a_law} ('lopt' must be an object with {', '.join(PARAM_NAMES)}, or null)"
                )
            lopt = ChinchillaLaw(**{name: number(lopt, name, "lopt.", positive=True) for name in PARAM_NAMES})
        covariance = raw.get("covariance")
        if covariance is not None:
            try:
                covariance = as_covariance(np.asarray(covariance, dtype=np.float64))
            except (TypeError, ValueError, OverflowError, RecursionError):
                raise ArchscaleInputError(
                    f"{not_a_law} ('covariance' must be a finite {len(COEFFICIENTS)}x{len(COEFFICIENTS)} matrix, or "
                    "null)"
                ) from None
        source = raw.get("source")
        return cls(form=form, **coefficients, lopt=lopt, source=source if isinstance(source, str) else str(path),
                   covariance=covariance)  # fmt: skip


def as_covariance(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """A [6, 6] covariance over COEFFICIENTS as nested tuples (the law is frozen and hashable)."""
    if matrix.shape != (len(COEFFICIENTS), len(COEFFICIENTS)) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"covariance must be a finite {len(COEFFICIENTS)}x{len(COEFFICIENTS)} matrix")
    return tuple(tuple(map(float, row)) for row in matrix)


def paper_law(fit: str = "fit_80M_145M_297M", lopt: ChinchillaLaw | None = None) -> ConditionalLaw:
    """The paper's multiplicative coefficients (arXiv 2510.18245, Section 4), shipped in law/data/paper_law.json."""
    raw = json.loads(PAPER_LAW_PATH.read_text())
    if fit not in raw["fits"]:
        raise ArchscaleInputError(f"unknown paper fit '{fit}' (known: {', '.join(raw['fits'])})")
    coefficients = {name: raw["fits"][fit][name] for name in COEFFICIENTS}
    return ConditionalLaw(form=raw["form"], **coefficients, lopt=lopt, source=f"arXiv 2510.18245 {fit}")


@dataclass
class ConditionalFit:
    law: ConditionalLaw
    stderr: dict  # coefficient -> standard error (0 for coefficients held fixed)
    fixed: tuple[str, ...]
    mse: float
    n_points: int
    r_identifiable: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        law = self.law.to_dict()
        out = {name: law[name] for name in COEFFICIENTS}
        out.update(form=self.law.form, mse=self.mse, n_points=self.n_points, x_opt=self.law.x_opt,
                   r_opt=self.law.r_opt, stderr=self.stderr, fixed=list(self.fixed),
                   r_identifiable=self.r_identifiable, notes=self.notes, covariance=law["covariance"])  # fmt: skip
        return out

    def report(self) -> str:
        lines = [f"Conditional law ({self.law.form}), Levenberg-Marquardt, {self.n_points} points"]
        for name in COEFFICIENTS:
            value = getattr(self.law, name)
            err = "(fixed)" if name in self.fixed else f"± {self.stderr[name]:.3g}"
            lines.append(f"  {name} = {value:12.6g}  {err}")
        x_opt = f"{self.law.x_opt:.4f}" if self.law.x_opt is not None else "none (x factor is monotone)"
        r_opt = f"{self.law.r_opt:.4f}" if self.law.r_opt is not None else "none"
        lines.append(f"  x* = a2/a1 = {x_opt}   r* = b2/b1 = {r_opt}")
        lines.append(f"  MSE(loss) = {self.mse:.3e}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def fit_conditional(
    N, D, d, r, loss, *, form: str = "multiplicative", lopt: ChinchillaLaw | np.ndarray
) -> ConditionalFit:
    """Fit the conditional law; `lopt` is a Chinchilla law or one L_opt value per point."""
    from scipy.optimize import least_squares

    if form not in FORMS:
        raise ArchscaleInputError(f"--form must be one of {', '.join(FORMS)}, got '{form}'")
    N, D, d, r, loss = (np.asarray(v, dtype=np.float64) for v in (N, D, d, r, loss))
    lopt_law = lopt if isinstance(lopt, ChinchillaLaw) else None
    with np.errstate(all="ignore"):
        lopt_values = lopt.predict(N, D) if lopt_law else np.asarray(lopt, dtype=np.float64)
        x = d / np.sqrt(N)
    if not (np.all(np.isfinite(lopt_values)) and np.all(lopt_values > 0)):
        raise ArchscaleInputError("L_opt(N, D) is not a finite positive loss at every point: check N, D and the loss")
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.isfinite(np.log(r)))):
        raise ArchscaleInputError("d/sqrt(N) or r is not a finite positive number at every point: check N, d and r")
    r_identifiable = float(np.ptp(np.log(r))) >= MIN_R_SPREAD
    fixed = {"b0": 1.0 if form == "multiplicative" else 0.0}
    notes = []
    if form == "multiplicative":
        notes.append("b0 fixed at 1: the two factors share one scale (only their product is identifiable)")
    if not r_identifiable:
        fixed.update(b1=0.0, b2=0.0)
        notes.append(
            f"r spans only {r.min():.3g}..{r.max():.3g}: the r factor is not identifiable and is held constant"
        )
    free = [name for name in COEFFICIENTS if name not in fixed]
    if np.unique(x).size < 3:
        raise ArchscaleInputError("the conditional law needs at least 3 distinct values of d/sqrt(N)")
    if N.size <= len(free):
        raise ArchscaleInputError(f"the conditional law needs more than {len(free)} points, got {N.size}")

    def make_law(values, covariance=None) -> ConditionalLaw:
        return ConditionalLaw(form=form, **fixed, **dict(zip(free, map(float, values), strict=True)), lopt=lopt_law,
                              source="fit", covariance=covariance)  # fmt: skip

    def residuals(values):
        return make_law(values).predict_loss(N, D, d, r, lopt_values=lopt_values) - loss

    start = {"a0": 1.0 if form == "multiplicative" else 0.0, "a1": 0.01, "a2": 0.01, "b1": 0.0, "b2": 0.0}
    not_finite = ArchscaleInputError(
        "the conditional law has no finite fit on this data: check that N, D, d, r and the loss are in plausible "
        "ranges (d/sqrt(N) is about 0.02-0.2 for real models)"
    )
    with np.errstate(all="ignore"):  # data far outside any real model: one clear error, not numpy warnings
        try:
            result = least_squares(residuals, [start[name] for name in free], method="lm", x_scale="jac",
                                   max_nfev=20000)  # fmt: skip
        except ValueError:  # "Residuals are not finite in the initial point"
            raise not_finite from None
        mse = float(np.mean(result.fun**2))
        if not (np.all(np.isfinite(result.x)) and np.isfinite(mse)):
            raise not_finite
        dof = max(N.size - len(free), 1)
        sigma2 = float(result.fun @ result.fun) / dof
        jtj = result.jac.T @ result.jac
        full_covariance = None
        try:
            covariance = np.linalg.inv(jtj) * sigma2
            errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
            index = [COEFFICIENTS.index(name) for name in free]
            full = np.zeros((len(COEFFICIENTS), len(COEFFICIENTS)))
            full[np.ix_(index, index)] = covariance
            full_covariance = as_covariance(full) if np.all(np.isfinite(full)) else None
        except np.linalg.LinAlgError:
            errors = np.full(len(free), np.inf)
    stderr = {name: 0.0 for name in fixed} | dict(zip(free, map(float, errors), strict=True))
    law = make_law(result.x, full_covariance)
    for name, is_u, opt in (("x", law.x_is_u_shaped, "x*"), ("r", law.r_is_u_shaped, "r*")):
        if not is_u and (name == "x" or r_identifiable):
            notes.append(f"the fitted {name} factor is monotone (not U-shaped): no {opt} inside the data range")
    return ConditionalFit(law=law, stderr=stderr, fixed=tuple(fixed), mse=mse,
                          n_points=int(N.size), r_identifiable=r_identifiable, notes=notes)  # fmt: skip
