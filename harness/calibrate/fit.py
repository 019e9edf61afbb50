"""Fit the perfmodel's efficiency factors and overheads to measured sweeps (`archscale calibrate`).

The fit: scipy.optimize.least_squares over the log of each factor (bounded, so efficiencies stay in (0, 1] and
overheads positive) on the log-ratios of predicted to measured prefill time (a full wave) and TPOT of the training
points. Two phases, so
the compute terms (prefill is mostly compute-bound) and the memory terms (decode mostly memory-bound) separate.
Rows that time only the whole run (vLLM's and SGLang's continuous batching, figures others published) give the
log-ratio of output tokens/s instead, and of the mean TTFT where they report one: fewer factors are identified
from those, and the identification check below holds the rest at their priors.

The factors: compute and memory efficiency (GEMMs), the efficiencies of the other operator classes (attention
prefill compute, attention decode memory, elementwise memory; each follows its GEMM figure unless adding it lowers
the residual significantly: forward selection with an F-test), the GEMM rows at half compute efficiency (small-M GEMMs, i.e. decode
at small batch, fall short of the peak), the memory efficiency of GEMV kernels (M of at most `gemv_max_tokens`
rows: a count, so each of GEMV_THRESHOLDS is tried and a larger one kept only if it fits significantly better), per-launch and
per-step overhead. A machine `archscale probe` measured has its GEMM curve instead of the small-M and GEMV terms: the
curve's shape is measured, so only its level (compute and memory efficiency) is fitted. A factor is fitted only where the
points identify it: after each fit the Jacobian (d log ratio / d log factor) is
checked, and when it is nearly rank deficient (a factor the points barely move, or two factors that move them the
same way — e.g. per-launch and per-step overhead when every config has the same layer count) leave a factor's
standard error above a factor of 2; the loosest such factor is held at its prior and the rest refitted. Standard errors come from the
Jacobian at the optimum (s² (JᵀJ)⁻¹, delta method back to the factor's scale).

Held out means held out: by default whole configs are left out of the fit (every second config in name order),
because the search predicts architectures nobody measured; with a single config, every second workload (input /
output lengths) instead. Splits by batch size or by workload can be asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from harness.sweep.drift import DriftCorrection
from harness.sweep.rows import SPLIT_KEYS, SweepData, has_phases, measured, predict_rows, split_value
from perfmodel.calibration import Calibration
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import Hardware

BASE_FACTORS = ("compute_efficiency", "memory_efficiency", "gemm_half_efficiency_tokens", "gemv_memory_efficiency",
                "kernel_launch_overhead_s", "step_overhead_s")  # fmt: skip
CLASS_FACTORS = ("attention_prefill_compute_efficiency", "attention_decode_memory_efficiency",
                 "elementwise_memory_efficiency")  # fmt: skip
FACTORS = BASE_FACTORS + CLASS_FACTORS
# What a measured GEMM curve (perfmodel.calibration `gemm_curve_rows`, written by `archscale probe`) replaces.
CURVE_REPLACES = ("gemm_half_efficiency_tokens", "gemv_memory_efficiency")
CURVE_OFF = "off: the measured GEMM curve (gemm_curve_rows) replaces it"  # their status in the report
# Operator-class efficiencies that default to a GEMM figure (perfmodel.calibration): held, they keep following it.
INHERITS = {"attention_prefill_compute_efficiency": "compute_efficiency",
            "attention_decode_memory_efficiency": "memory_efficiency",
            "elementwise_memory_efficiency": "memory_efficiency"}  # fmt: skip
BOUNDS = {
    "attention_prefill_compute_efficiency": (1e-3, 1.0),
    "attention_decode_memory_efficiency": (1e-3, 1.0),
    "elementwise_memory_efficiency": (1e-3, 1.0),
    "compute_efficiency": (1e-3, 1.0),
    "memory_efficiency": (1e-3, 1.0),
    "gemv_memory_efficiency": (1e-3, 1.0),
    "gemm_half_efficiency_tokens": (1e-3, 1e4),
    "kernel_launch_overhead_s": (1e-9, 1e-2),
    "step_overhead_s": (1e-9, 1.0),
}
# A prior of 0 (the factor off) has no gradient in log space: start such a factor here instead.
NEUTRAL_START = {"gemm_half_efficiency_tokens": 1.0}
# Which factor to hold first when several are equally loose: the operator-class refinements, then the rest.
HOLD_FIRST = ("elementwise_memory_efficiency", "attention_decode_memory_efficiency",
              "attention_prefill_compute_efficiency", "kernel_launch_overhead_s", "step_overhead_s",
              "gemv_memory_efficiency", "gemm_half_efficiency_tokens", "memory_efficiency",
              "compute_efficiency")  # fmt: skip
# GEMV regime (perfmodel.calibration): GEMMs of at most this many rows run as GEMV. A count is not a least-squares
# variable: each is tried in turn, and a larger one replaces the current choice only if it lowers the residual sum
# of squares by more than GEMV_F_LIMIT times the noise variance (an F-test with one extra parameter, far past 5%).
# The operator-class efficiencies are added the same way, one at a time.
GEMV_THRESHOLDS = (0, 1, 2, 4)
GEMV_F_LIMIT = 10.0
START_MARGIN = 0.05  # in log space
MAX_STD_LOG = 0.7  # a factor known only to within a factor of 2 (std of its log) is not identified: held at its prior
NOISE_FLOOR = 1e-3  # identification is judged as if the measurements had at least 0.1% noise


def _workload_order(workload: str) -> tuple[int, int]:
    input_len, output_len = workload.split("/")
    return int(input_len), int(output_len)


@dataclass
class Split:
    """Which measured points train the fit; the rest are held out."""

    by: str  # "config", "batch_size" or "workload"
    train: list
    holdout: list

    def is_train(self, row: dict) -> bool:
        return split_value(row, self.by) in self.train

    @property
    def name(self) -> str:
        """The split's plural as the CLI and the calibration file spell it: configs, batch_sizes, workloads."""
        return SPLIT_KEYS[self.by]


def choose_split(data: SweepData, *, train_configs=None, holdout_configs=None, train_batch_sizes=None,
                 holdout_batch_sizes=None, train_workloads=None, holdout_workloads=None) -> Split:  # fmt: skip
    """The user's split, or by default every second config (in name order) held out; with one config, every second
    workload (in order of input, then output length)."""
    choices = {("config", "train"): train_configs, ("config", "holdout"): holdout_configs,
               ("batch_size", "train"): train_batch_sizes, ("batch_size", "holdout"): holdout_batch_sizes,
               ("workload", "train"): train_workloads, ("workload", "holdout"): holdout_workloads}  # fmt: skip
    given = [key for key, value in choices.items() if value is not None]
    if len(given) > 1:
        raise ArchscaleInputError("give one of --train-configs, --holdout-configs, --train-batch-sizes, "
                                  "--holdout-batch-sizes, --train-workloads, --holdout-workloads")  # fmt: skip
    if given:
        by, side = given[0]
    else:
        by, side = ("config" if len(data.configs) > 1 else "workload"), None
    present = sorted({split_value(row, by) for row in data.rows}, key=_workload_order if by == "workload" else None)
    chosen = choices[given[0]] if given else None
    if chosen:
        unknown = [x for x in chosen if x not in present]
        if unknown:
            raise ArchscaleInputError(f"{', '.join(map(str, unknown))} not in the sweep files (they have "
                                      f"{', '.join(map(str, present))})")  # fmt: skip
        train = list(chosen) if side == "train" else [x for x in present if x not in chosen]
    else:
        train = present[::2] if len(present) > 1 else present
    train = [x for x in present if x in set(train)]
    if not train:
        raise ArchscaleInputError("the split leaves nothing to fit on")
    return Split(by=by, train=train, holdout=[x for x in present if x not in train])


@dataclass
class FactorFit:
    name: str
    prior: float
    value: float
    std_error: float | None  # None when held at the prior
    status: str  # "fitted", "at bound", "held at prior (not identified by these points)"


@dataclass
class CalibrationFit:
    hardware: str
    engine: str
    machine: str
    calibration: Calibration  # fitted, calibrated = True
    prior: Calibration
    factors: list[FactorFit]
    split: Split
    n_points: int  # training points
    rms_log_error_prior: float  # the training residuals, before the fit
    rms_log_error_fit: float
    residuals: list[dict] = field(default_factory=list)  # per training point and phase
    excluded: list[str] = field(default_factory=list)
    sha256: dict = field(default_factory=dict)
    allowed_factors: list[str] | None = None  # the --factors restriction; None: every factor could be fitted
    gemv_max_tokens_tried: list[int] = field(default_factory=lambda: list(GEMV_THRESHOLDS))
    drift_correction: DriftCorrection | None = None  # the measurements fitted were brought to one machine state

    def toml_table(self, metadata: dict) -> dict:
        """The [<hardware>.<engine>] table `archscale calibrate` writes (perfmodel.calibration reads it)."""
        split = {f"train_{self.split.name}": self.split.train, f"holdout_{self.split.name}": self.split.holdout}
        return {
            # unset (None): follows the GEMM figure; no measured GEMM curve (()): not written
            **{
                k: v
                for k, v in asdict(self.calibration).items()
                if v is not None and not (isinstance(v, tuple) and not v)
            },
            "n_points": self.n_points,
            **split,
            "fitted": [f.name for f in self.factors if f.std_error is not None],
            "fit_rms_log_error": self.rms_log_error_fit,
            "gemv_max_tokens_tried": list(self.gemv_max_tokens_tried),
            **({"allowed_factors": self.allowed_factors} if self.allowed_factors is not None else {}),
            "std_errors": {f.name: f.std_error for f in self.factors if f.std_error is not None},
            "sweep_sha256": dict(self.sha256),
            **({"drift_correction": self.drift_correction.to_dict()} if self.drift_correction else {}),
            "metadata": {k: v for k, v in metadata.items() if v is not None},
        }


# What each residual compares: (label, the Estimate field, the measured key). Log ratios of times and of a rate
# alike: a rate's error is the time's with the sign turned.
RESIDUALS = (("prefill", "prefill_time_s", "prefill_time_s"), ("tpot", "tpot_s", "tpot_s"),
             ("throughput", "output_tokens_per_s", "output_tokens_per_s"), ("ttft", "ttft_s", "ttft_s"))  # fmt: skip


def _uses(row: dict, label: str) -> bool:
    """Which residuals a row gives: our engine's rows their two phases (TPOT where there is a decode step); rows that
    time only the whole run their output tokens/s, and their mean TTFT where measured."""
    if has_phases(row):
        return label == "prefill" or (label == "tpot" and row["output_len"] > 1)
    return label == "throughput" or (label == "ttft" and row.get("ttft_s") is not None and row["ttft_s"] > 0)


def _phase_ratios(rows: list[dict], hardware: Hardware, calibration: Calibration):
    """log(predicted / measured) of every residual the rows give (see `_uses`), and their (row, label) pairs."""
    estimate = predict_rows(rows, hardware, calibration)
    ratios, labels = [], []
    for label, field_, key in RESIDUALS:
        used = np.asarray([_uses(row, label) for row in rows])
        if used.any():
            ratios.append(np.log(getattr(estimate, field_)[used] / measured(rows, key)[used]))
            labels += [(row, label) for row, u in zip(rows, used, strict=True) if u]
    return np.concatenate(ratios), labels


def _least_squares(rows, hardware, prior: Calibration, free: list[str]):
    from scipy.optimize import least_squares

    def residuals(theta):
        values = dict(zip(free, np.exp(theta), strict=True))
        return _phase_ratios(rows, hardware, replace(prior, **values))[0]

    lower, upper = np.log([BOUNDS[f][0] for f in free]), np.log([BOUNDS[f][1] for f in free])
    # Start at the prior, pulled 5% inside the bounds: trf started on a bound can stall there.
    start = [prior_value(prior, f) or NEUTRAL_START.get(f, BOUNDS[f][0]) for f in free]
    start = np.clip(np.log(start), lower + START_MARGIN, upper - START_MARGIN)
    return least_squares(residuals, start, bounds=(lower, upper), method="trf", x_scale=1.0, ftol=1e-10, xtol=1e-10,
                         gtol=1e-10, max_nfev=200)  # fmt: skip


def _significant(current, candidate, n_free: int) -> bool:
    """Does `candidate` (one more parameter) fit better than `current` by more than chance? An F-test with one extra
    parameter: the drop in the residual sum of squares against GEMV_F_LIMIT times the noise variance."""
    noise_variance = 2 * candidate.cost / max(len(candidate.fun) - n_free, 1)
    return 2 * (current.cost - candidate.cost) > GEMV_F_LIMIT * noise_variance


def prior_value(calibration: Calibration, name: str) -> float:
    """A factor's value in effect: an operator-class efficiency left unset follows its GEMM figure."""
    value = getattr(calibration, name)
    return getattr(calibration, INHERITS[name]) if value is None and name in INHERITS else value


def _std_log(result, n_free: int) -> np.ndarray:
    """Standard error of each log-factor: s² (JᵀJ)⁻¹, with s at least NOISE_FLOOR (so exact data still shows which
    factors the points cannot tell apart); inf where JᵀJ is singular."""
    dof = max(len(result.fun) - n_free, 1)
    variance = max(2 * result.cost / dof, NOISE_FLOOR**2)
    try:
        cov = variance * np.linalg.inv(result.jac.T @ result.jac)
    except np.linalg.LinAlgError:
        return np.full(n_free, np.inf)
    diag = np.diag(cov)
    return np.where(diag >= 0, np.sqrt(np.abs(diag)), np.inf)


def _unidentified(std_log: np.ndarray, free: list[str]) -> str | None:
    """The factor to hold at its prior (the least determined one, if the points leave it loose), else None."""
    loose = [f for f, s in zip(free, std_log, strict=True) if not s <= MAX_STD_LOG]
    if not loose:
        return None
    worst = max(std_log[free.index(f)] for f in loose)
    tied = [f for f in loose if std_log[free.index(f)] >= 0.5 * worst]
    return min(tied, key=HOLD_FIRST.index)


def _fit_identified(rows, hardware, prior: Calibration, factors=BASE_FACTORS):
    """Least squares over `factors`, holding the loosest at its prior until every fitted one is identified."""
    free = list(factors)
    while True:
        result = _least_squares(rows, hardware, prior, free)
        std_log = _std_log(result, len(free))
        norms = np.linalg.norm(result.jac, axis=0)
        blind = [f for f, n in zip(free, norms, strict=True) if not n > 1e-9 * max(norms.max(), 1e-300)]
        loose = blind[0] if blind else _unidentified(std_log, free)  # a factor no point moves goes first
        if loose is None or len(free) == 1:
            return result, free, std_log
        free.remove(loose)


def check_factors(names) -> tuple[str, ...]:
    """The factors a user allows to be fitted (`--factors`), checked: known names, at least one of BASE_FACTORS."""
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in FACTORS]
    if unknown:
        raise ArchscaleInputError(f"unknown factor(s) {', '.join(unknown)} (known: {', '.join(FACTORS)})")
    if not any(n in BASE_FACTORS for n in names):
        raise ArchscaleInputError(f"--factors needs at least one of {', '.join(BASE_FACTORS)}")
    return names


def calibrate(data: SweepData, hardware: Hardware, prior: Calibration, split: Split,
              factors: tuple[str, ...] | None = None) -> CalibrationFit:  # fmt: skip
    """Fit FACTORS (or only those of `factors`; the rest held at the prior) on the training points of `data` (one
    machine, one engine) for `hardware`."""
    allowed = FACTORS if factors is None else check_factors(factors)
    if prior.gemm_curve_rows:  # a measured GEMM curve holds the small-M regime: its two-number model stays off
        allowed = tuple(f for f in allowed if f not in CURVE_REPLACES)
    base = tuple(f for f in BASE_FACTORS if f in allowed)
    if not base:
        raise ArchscaleInputError(f"--factors leaves nothing to fit: {hardware.name} has a measured GEMM curve, which "
                                  f"replaces {' and '.join(CURVE_REPLACES)}")  # fmt: skip
    rows = [row for row in data.rows if split.is_train(row)]
    excluded = list(data.excluded)
    feasible = predict_rows(rows, hardware, prior).feasible
    for row, ok in zip(list(rows), feasible, strict=True):
        if not ok:
            rows.remove(row)
            excluded.append(f"{row['config']} b={row['batch_size']}: the model finds the point infeasible on "
                            f"{hardware.name} (does not fit in memory)")  # fmt: skip
    if not rows:
        raise ArchscaleInputError("no training point left to fit (check the split and the hardware entry)")
    best, tried = None, {}
    thresholds = GEMV_THRESHOLDS if "gemv_memory_efficiency" in allowed else (int(prior.gemv_max_tokens),)
    for threshold in thresholds:
        start = replace(prior, gemv_max_tokens=float(threshold))
        result, free, std_log = _fit_identified(rows, hardware, start, base)
        tried[threshold] = float(2 * result.cost)
        if best is None or _significant(best[0], result, len(free)):
            best = (result, free, std_log, start)
    result, free, std_log, start = best
    # Operator-class refinements, one at a time (forward selection): the one that lowers the residual most is kept
    # if the drop passes the same F-test, then the next; the others keep following their GEMM figure.
    chosen: list[str] = []
    while candidates := [f for f in CLASS_FACTORS if f not in chosen and f in allowed]:
        trials = {f: _fit_identified(rows, hardware, start, (*base, *chosen, f)) for f in candidates}
        name, trial = min(trials.items(), key=lambda item: item[1][0].cost)
        if name not in trial[1] or not _significant(result, trial[0], len(trial[1])):
            break
        chosen.append(name)
        result, free, std_log = trial
    values = dict(zip(free, np.exp(result.x), strict=True))
    fitted = replace(start, **values, calibrated=True)
    factor_fits = []
    for name in FACTORS:
        before_fit = prior_value(prior, name)
        if name not in free:
            follows = getattr(fitted, name) is None and name in INHERITS
            status = (CURVE_OFF if name in CURVE_REPLACES
                      and prior.gemm_curve_rows else "held at prior (not in --factors)" if name not in allowed
                      else f"follows {INHERITS[name]} (adding it did not fit significantly better)" if follows
                      else "held at prior (not identified by these points)")  # fmt: skip
            factor_fits.append(FactorFit(name, before_fit, prior_value(fitted, name), None, status))
            continue
        value, i = values[name], free.index(name)
        at_bound = any(np.isclose(np.log(value), np.log(b), atol=1e-6) for b in BOUNDS[name])
        std = float(value * std_log[i]) if np.isfinite(std_log[i]) else None
        factor_fits.append(FactorFit(name, before_fit, float(value), std, "at bound" if at_bound else "fitted"))
    chosen = int(fitted.gemv_max_tokens)
    status = (CURVE_OFF if prior.gemm_curve_rows
              else f"chosen from {', '.join(map(str, thresholds))} (residual "
              + ", ".join(f"{t}: {ssr:.3g}" for t, ssr in tried.items()) + ")")  # fmt: skip
    factor_fits.append(FactorFit("gemv_max_tokens", prior.gemv_max_tokens, float(chosen), None, status))
    before, labels = _phase_ratios(rows, hardware, prior)
    after, _ = _phase_ratios(rows, hardware, fitted)
    residuals = [
        {"config": row["config"], "batch_size": row["batch_size"], "input_len": row["input_len"],
         "output_len": row["output_len"], "phase": phase, "log_ratio_prior": float(b), "log_ratio_fit": float(a)}
        for (row, phase), b, a in zip(labels, before, after, strict=True)
    ]  # fmt: skip
    return CalibrationFit(
        hardware=hardware.name, engine=data.engine, machine=data.machine, calibration=fitted, prior=prior,
        factors=factor_fits, split=split, n_points=len(rows), rms_log_error_prior=float(np.sqrt(np.mean(before**2))),
        rms_log_error_fit=float(np.sqrt(np.mean(after**2))), residuals=residuals, excluded=excluded,
        sha256=dict(data.sha256), drift_correction=data.drift_correction,
        allowed_factors=None if factors is None else list(allowed), gemv_max_tokens_tried=list(thresholds),
    )  # fmt: skip


def output_tokens_errors_pct(rows: list[dict], hardware: Hardware, calibration: Calibration) -> np.ndarray:
    """Signed % error of predicted output tokens/s per row: 100·(predicted / measured − 1)."""
    if not rows:
        return np.zeros(0)
    predicted = predict_rows(rows, hardware, calibration).output_tokens_per_s
    return 100 * (predicted / measured(rows, "output_tokens_per_s") - 1)
