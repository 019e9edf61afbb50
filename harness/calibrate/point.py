"""One compared point: a sweep point's measured and predicted figures with their signed errors, shared by the
comparison (compare.py) and its ranking (ranking.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PointComparison:
    config: str  # the config name; with dtype and attention when the data set holds several of those
    batch_size: int
    input_len: int
    output_len: int
    split: str  # "train" or "holdout" when the calibration records its fit; else "calibrated" / "uncalibrated"
    measured_output_tokens_per_s: float
    predicted_output_tokens_per_s: float
    output_tokens_per_s_error_pct: float | None
    measured_ttft_s: float | None  # mean over requests; None in rows written before TTFT was per request
    predicted_ttft_s: float | None
    ttft_s_error_pct: float | None
    measured_prefill_time_s: float | None  # one full wave's prefill (None: the engine times only the whole run)
    predicted_prefill_time_s: float | None
    prefill_time_s_error_pct: float | None
    measured_tpot_s: float | None  # None when output_len = 1 (no decode step)
    predicted_tpot_s: float | None
    tpot_s_error_pct: float | None
    predicted_concurrency: int
    measured_concurrency: int | None
    measurements: int = 1  # how many times the point was measured (passes); the measured figures are their medians
    measured_range: list[float] | None = None  # [lowest, highest] output tok/s over the measurements (None: one)
    measured_values: list[float] | None = None  # each measurement's output tok/s, pass by pass (None: one)

    @property
    def measured_spread_pct(self) -> float | None:
        """(highest − lowest) / median output tok/s over the point's measurements, %; None when measured once."""
        if self.measured_range is None:
            return None
        low, high = self.measured_range
        return 100.0 * (high - low) / self.measured_output_tokens_per_s

    @property
    def workload(self) -> str:
        """ "INPUT/OUTPUT", as a split by workload names it."""
        return f"{self.input_len}/{self.output_len}"
