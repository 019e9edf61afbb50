"""How much of a sweep's scatter between passes the machine itself explains.

Our engine's rows carry the machine reference timed around each point (harness/sweep/machine_reference.py: a fixed GEMM
and a fixed memory stream, which only the machine's state can change). Over the points measured more than once with
it, each measurement's deviation from its point's median output tokens/s (in log) is held against how much faster or
slower the machine ran than at that point's other measurements (the log of its reference times against their
median): Pearson r for each reference, and the least-squares fit on both, whose residual is the scatter the machine
does not explain — what is left for the engine, the timer and the model to answer for.

`fit_drift_correction` turns the same fit, per measured field, into a correction (`--drift-correct` of calibrate and
compare): every measurement brought to one machine state — the probe's, when the hardware entry records its
reference, else the rows' median — before a point's passes are merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.sweep.machine_reference import REFERENCE_FIELDS
from perfmodel.errors import ArchscaleInputError


@dataclass
class DriftSummary:
    n_points: int  # points measured at least twice with the reference
    n_measurements: int  # their measurements
    reference_gemm_spread_pct: float  # (highest − lowest) / median of the reference GEMM's time over them all, %
    reference_stream_spread_pct: float  # the same for the reference stream
    scatter_pct: float  # root mean square of 100·ln(output tok/s / its point's median): a measurement's scatter
    gemm_correlation: float | None  # Pearson r of that deviation with the machine's speed by the reference GEMM
    stream_correlation: float | None  # ... by the reference stream (None where either side does not vary)
    unexplained_scatter_pct: float  # scatter_pct left after the least-squares fit on both references


def drift_summary(groups: list[list[dict]]) -> DriftSummary | None:
    """`groups`: the measured rows of each point (one row per measurement). None when no point has two measurements
    with the reference (rows from before it, other engines, points measured once)."""
    fit = _fit(groups, "output_tokens_per_s")
    if fit is None:
        return None
    coefficients, speed, deviation, references, n_points = fit
    residual = deviation - speed @ coefficients
    spread = 100 * (references.max(axis=0) - references.min(axis=0)) / np.median(references, axis=0)
    return DriftSummary(
        n_points=n_points,
        n_measurements=len(deviation),
        reference_gemm_spread_pct=float(spread[0]),
        reference_stream_spread_pct=float(spread[1]),
        scatter_pct=_rms_pct(deviation),
        gemm_correlation=_correlation(deviation, speed[:, 0]),
        stream_correlation=_correlation(deviation, speed[:, 1]),
        unexplained_scatter_pct=_rms_pct(residual),
    )


def _usable(groups: list[list[dict]], key: str) -> list[list[dict]]:
    """The groups' rows that have `key` and both references, in groups of two or more."""
    kept = [[row for row in group if row.get(key) and all(row.get(f) for f in REFERENCE_FIELDS)] for group in groups]
    return [group for group in kept if len(group) >= 2]


def _fit(groups: list[list[dict]], key: str):
    """The least-squares fit of deviation = speed · coefficients over every measurement of the usable groups, where
    deviation is ln(key) less its point's median of ln(key), and speed, per reference, its point's median of
    ln(reference time) less the measurement's own. Returns (coefficients [2], speed [n, 2], deviation [n],
    reference times [n, 2], number of groups fitted), or None without a group to fit."""
    usable = _usable(groups, key)
    if not usable:
        return None
    deviation, speed, references = [], [], []
    for group in usable:
        value = np.log([row[key] for row in group])
        times = np.log([[row[f] for f in REFERENCE_FIELDS] for row in group])  # [measurements, 2]
        deviation.append(value - np.median(value))
        speed.append(np.median(times, axis=0) - times)  # > 0: the machine ran faster than at the point's median
        references.append(np.exp(times))
    deviation, speed, references = np.concatenate(deviation), np.concatenate(speed), np.concatenate(references)
    coefficients, *_ = np.linalg.lstsq(speed, deviation, rcond=None)
    return coefficients, speed, deviation, references, len(usable)


@dataclass
class DriftCorrection:
    """Measurements brought to one machine state: each field's value · (its row's speed)^−exponent, the speed being
    the state's reference time over the row's own, per reference."""

    reference_gemm_s: float  # the state measurements are brought to: the probe's reference times, else the rows'
    reference_stream_s: float  # median
    exponents: dict[str, tuple[float, float]]  # field -> ln(field) per ln(speed) by the GEMM and by the stream
    state: str = "typical of these rows"  # or "of the probe" (the hardware entry's machine_reference)

    def to_dict(self) -> dict:
        """As a calibration file records it (TOML: arrays, not tuples)."""
        return {"reference_gemm_s": self.reference_gemm_s, "reference_stream_s": self.reference_stream_s,
                "state": self.state, "exponents": {key: list(value) for key, value in self.exponents.items()}}  # fmt: skip

    def describe(self) -> str:
        """One line: the state the measurements were brought to and how output tok/s follows the machine."""
        gemm, stream = self.exponents["output_tokens_per_s"]
        return (f"measurements brought to the machine state {self.state} (reference GEMM "
                f"{1e3 * self.reference_gemm_s:.2f} ms, stream {1e3 * self.reference_stream_s:.2f} ms): output "
                f"tok/s ∝ GEMM speed^{gemm:.2f} · stream speed^{stream:.2f}, fitted on the points' own repeats")  # fmt: skip

    def apply(self, row: dict) -> dict:
        """A copy of a measured row with every field of `exponents` brought to this machine state."""
        speed = np.log([self.reference_gemm_s / row["reference_gemm_s"],
                        self.reference_stream_s / row["reference_stream_s"]])  # fmt: skip
        out = dict(row)
        for key, exponent in self.exponents.items():
            if row.get(key):  # absent, or a TPOT of 0 (one output token): nothing to bring anywhere
                out[key] = float(row[key] * np.exp(-speed @ np.asarray(exponent)))
        return out


def fit_drift_correction(groups: list[list[dict]], fields: tuple[str, ...],
                         probe_state: tuple[float, float] | None = None) -> DriftCorrection:  # fmt: skip
    """The exponents of each of `fields` fitted on the points measured more than once (each measurement against its
    point's median, so nothing but the machine's drift is fitted: no prediction takes part), to bring measurements to
    `probe_state` (the hardware entry's machine_reference: what its uncalibrated priors were measured in), else to the
    rows' median reference. Every row must have the machine reference; one clear error otherwise."""
    rows = [row for group in groups for row in group]
    missing = [row for row in rows if not all(row.get(f) for f in REFERENCE_FIELDS)]
    if missing:
        row = missing[0]
        raise ArchscaleInputError(f"--drift-correct: {len(missing)} of {len(rows)} rows have no machine reference "
                                  f"(first: {row.get('config')} b={row.get('batch_size')} in={row.get('input_len')} "
                                  f"out={row.get('output_len')}; rows from before it, or an engine in a process of "
                                  "its own)")  # fmt: skip
    exponents = {}
    for key in fields:
        fit = _fit(groups, key)
        if fit is not None:
            exponents[key] = tuple(float(c) for c in fit[0])
    if "output_tokens_per_s" not in exponents:
        raise ArchscaleInputError("--drift-correct: no point was measured twice (passes, `archscale sweep --passes`): "
                                  "nothing tells how the measurements follow the machine")  # fmt: skip
    if probe_state is not None:
        return DriftCorrection(*map(float, probe_state), exponents, state="of the probe")
    typical = np.median([[row[f] for f in REFERENCE_FIELDS] for row in rows], axis=0)
    return DriftCorrection(float(typical[0]), float(typical[1]), exponents)


def _rms_pct(log_values: np.ndarray) -> float:
    return float(100 * np.sqrt(np.mean(log_values**2)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def format_drift(drift: DriftSummary) -> str:
    """One paragraph for a comparison report."""

    def r(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.2f}"

    return (f"Machine reference (a fixed GEMM and memory stream timed around each point), over {drift.n_measurements} "
            f"measurements of {drift.n_points} points: the GEMM's time spread {drift.reference_gemm_spread_pct:.1f}%, "
            f"the stream's {drift.reference_stream_spread_pct:.1f}%. A measurement of output tok/s lands "
            f"{drift.scatter_pct:.1f}% (rms) from its point's median; correlation with the machine's speed: "
            f"r = {r(drift.gemm_correlation)} (GEMM), {r(drift.stream_correlation)} (stream); "
            f"{drift.unexplained_scatter_pct:.1f}% rms is left after a fit on both (the rest is the machine's)")  # fmt: skip
