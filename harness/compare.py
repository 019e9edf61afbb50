"""`compare`: the throughput model against measured sweep rows — errors, ranking of configs, ratios to a baseline.

Every measured row is re-predicted with the current model (`harness.sweep_rows.predict_rows`) for the hardware
and calibration given, not read from the row's stored `predicted`. The result (`Comparison`, plain dataclasses)
holds per point the measured and predicted output tokens/s, TTFT (mean over requests), a full wave's prefill time
and TPOT with their signed errors (100·(predicted/measured − 1), TPOT only where output_len > 1); summaries of
|error| over all points and, when the calibration records which configs it was fitted on, over training and
held-out points separately; how well the model orders configs at each workload (what a search relies on: order
right, pairwise concordance, Spearman); and the throughput ratio of every config to a baseline config, measured vs
predicted. Points the comparison cannot use
are listed in `excluded` with the reason, never mixed in. `harness.cmd_compare.format_report` renders it as text.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from harness.sweep_rows import SPLIT_KEYS, SweepData, measured, predict_rows, split_value
from perfmodel.calibration import Calibration, read_toml
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import Hardware

# (key in rows and estimates, label in reports)
METRICS = (("output_tokens_per_s", "out tok/s"), ("ttft_s", "TTFT"), ("prefill_time_s", "prefill"), ("tpot_s", "TPOT"))


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


@dataclass
class MetricSummary:
    metric: str  # "output_tokens_per_s", "ttft_s", "prefill_time_s" or "tpot_s"
    split: str  # "all", "train" or "holdout"
    n_points: int
    median_abs_error_pct: float | None
    max_abs_error_pct: float | None
    median_error_pct: float | None  # signed: > 0 means the model predicts too high


@dataclass
class RankGroup:
    batch_size: int
    input_len: int
    output_len: int
    measured_order: list[str]  # configs, fastest (output tok/s) first
    predicted_order: list[str]
    order_right: bool
    n_pairs: int
    n_pairs_right: int
    spearman: float | None  # None below 3 configs (or when a side is constant)
    n_pairs_apart: int = 0  # pairs whose repeated measurements do not overlap (see Ranking)
    n_pairs_apart_right: int = 0


@dataclass
class Ranking:
    n_groups: int  # (batch, in, out) groups with at least 2 configs
    n_groups_right: int
    share_groups_right: float | None
    n_pairs: int
    n_pairs_right: int
    pairwise_concordance: float | None
    n_spearman_groups: int
    mean_spearman: float | None
    groups: list[RankGroup] = field(default_factory=list)
    # Pairs both measured more than once whose measurements do not overlap (one's lowest above the other's highest):
    # the order measurement can vouch for. None when no point was measured more than once.
    n_pairs_apart: int | None = None
    n_pairs_apart_right: int | None = None
    n_groups_right_apart: int | None = None  # workloads where every pair measured apart is ordered right


@dataclass
class RatioPoint:
    config: str
    batch_size: int
    input_len: int
    output_len: int
    measured_ratio: float  # config's output tok/s / the baseline's, at the same (batch, in, out)
    predicted_ratio: float
    ratio_error_pct: float


@dataclass
class Pairs:
    baseline: str | None
    n_ratios: int
    median_abs_ratio_error_pct: float | None
    max_abs_ratio_error_pct: float | None
    ratios: list[RatioPoint] = field(default_factory=list)
    missing_baseline: list[str] = field(default_factory=list)  # points with no baseline at their workload


@dataclass
class Comparison:
    machine: str
    engine: str
    hardware: str
    hardware_display_name: str
    calibration_label: str
    calibrated: bool
    holdout_configs: list[str] | None  # all three None: the calibration records no fit split
    holdout_batch_sizes: list[int] | None
    holdout_workloads: list[str] | None  # "INPUT/OUTPUT"
    sweep_sha256: dict[str, str]
    points: list[PointComparison]
    summary: list[MetricSummary]
    ranking: Ranking
    pairs: Pairs
    excluded: list[str]
    warnings: list[str]
    # Over the points measured more than once: how many, and the median and max of (highest − lowest) / median
    # output tok/s, % — how far apart measurements of the same point land (the floor under any model's error).
    n_repeated_points: int = 0
    median_measured_spread_pct: float | None = None
    max_measured_spread_pct: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready: floats that are not finite become None (strict JSON)."""
        return _finite(asdict(self))


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _error_pct(predicted: float, measured_value: float) -> float | None:
    if not (measured_value > 0 and math.isfinite(predicted) and math.isfinite(measured_value)):
        return None
    return 100.0 * (predicted / measured_value - 1.0)


def error_stats(errors: list[float]) -> tuple[float | None, float | None, float | None]:
    if not errors:
        return None, None, None
    values = np.asarray(errors, dtype=np.float64)
    return float(np.median(np.abs(values))), float(np.max(np.abs(values))), float(np.median(values))


def fit_holdout(calibration_file: str | Path, hardware: str, engine: str, data: SweepData) -> dict:
    """What a calibration file's fit did not train on, as keyword arguments of `compare`: `holdout_configs`,
    `holdout_batch_sizes` or `holdout_workloads` (what `archscale calibrate` records in [<hardware>.<engine>]:
    `train_<what>`, else the `holdout_<what>` list), or {} when the file records no split."""
    raw = read_toml(Path(calibration_file).expanduser(), "calibration file")
    entry = raw.get(hardware, {}).get(engine) if isinstance(raw.get(hardware), dict) else None
    if not isinstance(entry, dict):
        raise ArchscaleInputError(f"{calibration_file} has no [{hardware}.{engine}] calibration")
    for by, what in SPLIT_KEYS.items():
        kind = int if by == "batch_size" else str
        present = {split_value(row, by) for row in data.rows}
        for side in ("train", "holdout"):
            names = entry.get(f"{side}_{what}")
            if names is not None and not (isinstance(names, list) and all(isinstance(x, kind) for x in names)):
                raise ArchscaleInputError(f"{calibration_file}: [{hardware}.{engine}].{side}_{what} must be a list")
        if f"train_{what}" in entry:
            return {f"holdout_{what}": sorted(present - set(entry[f"train_{what}"]))}
        if f"holdout_{what}" in entry:
            return {f"holdout_{what}": sorted(set(entry[f"holdout_{what}"]))}
    return {}


def _labels(rows: list[dict]) -> list[str]:
    """Config names, with dtype and attention added when the rows hold more than one such variant."""
    variants = {(row["dtype"], row["attention"]) for row in rows}
    if len(variants) == 1:
        return [row["config"] for row in rows]
    return [f"{row['config']} ({row['dtype']}, {row['attention']})" for row in rows]


def compare(data: SweepData, hardware: Hardware, calibration: Calibration, *, calibration_label: str,
            holdout_configs=None, holdout_batch_sizes=None, holdout_workloads=None,
            baseline: str | None = None) -> Comparison:  # fmt: skip
    """Measured vs predicted for every row of `data` (see the module docstring). `holdout_configs`,
    `holdout_batch_sizes` or `holdout_workloads`: what the calibration was not fitted on (all None: no split, as for
    the priors);
    `baseline`: the config the ratios are taken to (default: `default_baseline`)."""
    excluded, notes = list(data.excluded), []
    stored = sorted({row["hardware"] for row in data.rows if row.get("hardware")} - {hardware.name})
    if stored:
        notes.append(f"the rows were predicted for hardware {', '.join(stored)} when measured; this comparison "
                     f"re-predicts them for {hardware.name} ({hardware.display_name})")  # fmt: skip
    rows, labels, seen = [], [], {}
    for row, label in zip(data.rows, _labels(data.rows), strict=True):
        key = (label, row["batch_size"], row["input_len"], row["output_len"])
        if key in seen:
            excluded.append(f"{_point_label(*key)}: a second row for this point (shape_hash {row.get('shape_hash')}; "
                            f"the first had {seen[key]}): only the first is compared")  # fmt: skip
            continue
        seen[key] = row.get("shape_hash")
        rows.append(row)
        labels.append(label)
    est = predict_rows(rows, hardware, calibration)
    kept = []
    for i, row in enumerate(rows):
        if not est.feasible[i]:
            excluded.append(f"{_point_label(labels[i], row['batch_size'], row['input_len'], row['output_len'])}: "
                            f"the model finds it infeasible on {hardware.name} (weights, workspace or one "
                            "sequence's KV cache do not fit its memory budget)")  # fmt: skip
        else:
            kept.append(i)
    if not kept:
        raise ArchscaleInputError(f"no point left to compare on {hardware.name}: the model finds every measured "
                                  "point infeasible there")  # fmt: skip
    holdout = None if holdout_configs is None else sorted(set(holdout_configs))
    holdout_batches = None if holdout_batch_sizes is None else sorted(set(holdout_batch_sizes))
    holdout_shapes = None if holdout_workloads is None else sorted(set(holdout_workloads))
    has_split = any(x is not None for x in (holdout, holdout_batches, holdout_shapes))
    points = []
    for i in kept:
        row = rows[i]
        split = "calibrated" if calibration.calibrated else "uncalibrated"
        if has_split:
            held = (row["config"] in (holdout or ()) or row["batch_size"] in (holdout_batches or ())
                    or split_value(row, "workload") in (holdout_shapes or ()))  # fmt: skip
            split = "holdout" if held else "train"
        values = {}
        for key, _ in METRICS:
            m, p = float(measured([row], key)[0]), float(getattr(est, key)[i])
            if (key == "tpot_s" and row["output_len"] <= 1) or math.isnan(m):
                m = p = None
            values[key] = (m, p, None if m is None else _error_pct(p, m))
        points.append(PointComparison(
            config=labels[i], batch_size=row["batch_size"], input_len=row["input_len"], output_len=row["output_len"],
            split=split,
            measured_output_tokens_per_s=values["output_tokens_per_s"][0],
            predicted_output_tokens_per_s=values["output_tokens_per_s"][1],
            output_tokens_per_s_error_pct=values["output_tokens_per_s"][2],
            measured_ttft_s=values["ttft_s"][0], predicted_ttft_s=values["ttft_s"][1],
            ttft_s_error_pct=values["ttft_s"][2],
            measured_prefill_time_s=values["prefill_time_s"][0], predicted_prefill_time_s=values["prefill_time_s"][1],
            prefill_time_s_error_pct=values["prefill_time_s"][2],
            measured_tpot_s=values["tpot_s"][0], predicted_tpot_s=values["tpot_s"][1],
            tpot_s_error_pct=values["tpot_s"][2],
            predicted_concurrency=int(est.concurrency[i]), measured_concurrency=row.get("concurrency"),
            measurements=int(row.get("measurements", 1)), measured_range=row.get("measured_range"),
        ))  # fmt: skip
    return Comparison(
        machine=data.machine, engine=data.engine, hardware=hardware.name,
        hardware_display_name=hardware.display_name, calibration_label=calibration_label,
        calibrated=calibration.calibrated, holdout_configs=holdout, holdout_batch_sizes=holdout_batches,
        holdout_workloads=holdout_shapes,
        sweep_sha256=dict(data.sha256), points=points, summary=summarize(points, split=has_split), ranking=rank(points),
        pairs=ratios_to_baseline(points, baseline), excluded=excluded, warnings=notes, **_spread(points),
    )  # fmt: skip


def _spread(points: list[PointComparison]) -> dict:
    spreads = [p.measured_spread_pct for p in points if p.measured_spread_pct is not None]
    if not spreads:
        return {}
    return {"n_repeated_points": len(spreads), "median_measured_spread_pct": float(np.median(spreads)),
            "max_measured_spread_pct": float(np.max(spreads))}  # fmt: skip


def _point_label(config: str, batch: int, input_len: int, output_len: int) -> str:
    return f"{config} b={batch} in={input_len} out={output_len}"


def summarize(points: list[PointComparison], *, split: bool) -> list[MetricSummary]:
    """Median and max |error| per metric, over all points, then over training and held-out points."""
    summary = []
    for name in ("all", "train", "holdout") if split else ("all",):
        chosen = [p for p in points if name == "all" or p.split == name]
        for key, _ in METRICS:
            errors = [e for p in chosen if (e := getattr(p, f"{key}_error_pct")) is not None]
            summary.append(MetricSummary(key, name, len(errors), *error_stats(errors)))
    return summary


def _workloads(points: list[PointComparison]) -> dict[tuple, dict[str, PointComparison]]:
    groups: dict[tuple, dict[str, PointComparison]] = defaultdict(dict)
    for p in points:
        groups[(p.batch_size, p.input_len, p.output_len)][p.config] = p
    return dict(sorted(groups.items()))


def rank(points: list[PointComparison]) -> Ranking:
    """Does the model order configs by output tok/s as measured, at each (batch, in, out)?"""
    from scipy.stats import spearmanr

    groups, spearmans = [], []
    for (batch, input_len, output_len), by_config in _workloads(points).items():
        if len(by_config) < 2:
            continue
        configs = sorted(by_config)
        meas = np.asarray([by_config[c].measured_output_tokens_per_s for c in configs])
        pred = np.asarray([by_config[c].predicted_output_tokens_per_s for c in configs])
        ranges = [by_config[c].measured_range for c in configs]
        pairs = list(combinations(range(len(configs)), 2))
        right = sum(np.sign(meas[i] - meas[j]) == np.sign(pred[i] - pred[j]) for i, j in pairs)
        apart = [(i, j) for i, j in pairs if _apart(ranges[i], ranges[j])]
        apart_right = sum(np.sign(meas[i] - meas[j]) == np.sign(pred[i] - pred[j]) for i, j in apart)
        rho = None
        if len(configs) >= 3:
            with warnings.catch_warnings():  # a constant side gives NaN (skipped), not a warning on stderr
                warnings.simplefilter("ignore")
                value = float(spearmanr(meas, pred).statistic)
            rho = value if math.isfinite(value) else None
        if rho is not None:
            spearmans.append(rho)
        groups.append(RankGroup(
            batch, input_len, output_len,
            measured_order=[configs[k] for k in np.argsort(-meas, kind="stable")],
            predicted_order=[configs[k] for k in np.argsort(-pred, kind="stable")],
            order_right=bool(right == len(pairs)), n_pairs=len(pairs), n_pairs_right=int(right), spearman=rho,
            n_pairs_apart=len(apart), n_pairs_apart_right=int(apart_right),
        ))  # fmt: skip
    n_right = sum(g.order_right for g in groups)
    n_pairs, n_pairs_right = sum(g.n_pairs for g in groups), sum(g.n_pairs_right for g in groups)
    return Ranking(
        n_groups=len(groups), n_groups_right=n_right, share_groups_right=n_right / len(groups) if groups else None,
        n_pairs=n_pairs, n_pairs_right=n_pairs_right,
        pairwise_concordance=n_pairs_right / n_pairs if n_pairs else None,
        n_spearman_groups=len(spearmans), mean_spearman=float(np.mean(spearmans)) if spearmans else None,
        groups=groups, **_apart_counts(points, groups),
    )  # fmt: skip


def _apart(a: list[float] | None, b: list[float] | None) -> bool:
    """Were two points measured apart: both measured more than once, one's lowest above the other's highest?"""
    return a is not None and b is not None and (a[0] > b[1] or b[0] > a[1])


def _apart_counts(points: list[PointComparison], groups: list[RankGroup]) -> dict:
    if not any(p.measured_range is not None for p in points):
        return {}  # every point measured once: the spread between measurements is unknown
    return {"n_pairs_apart": sum(g.n_pairs_apart for g in groups),
            "n_pairs_apart_right": sum(g.n_pairs_apart_right for g in groups),
            "n_groups_right_apart": sum(g.n_pairs_apart_right == g.n_pairs_apart for g in groups)}  # fmt: skip


def default_baseline(points: list[PointComparison]) -> str:
    """The first config (sorted) measured at every (batch, in, out) of the comparison, else the first config."""
    groups = _workloads(points).values()
    configs = sorted({p.config for p in points})
    everywhere = [c for c in configs if all(c in g for g in groups)]
    return (everywhere or configs)[0]


def ratios_to_baseline(points: list[PointComparison], baseline: str | None = None) -> Pairs:
    """Each config's output tok/s over the baseline's at the same (batch, in, out), measured and predicted."""
    configs = sorted({p.config for p in points})
    if baseline is not None and baseline not in configs:
        raise ArchscaleInputError(f"baseline '{baseline}' is not among the compared configs ({', '.join(configs)})")
    baseline = baseline or default_baseline(points)
    ratios, missing = [], []
    for (batch, input_len, output_len), by_config in _workloads(points).items():
        base = by_config.get(baseline)
        for config, p in sorted(by_config.items()):
            if config == baseline:
                continue
            if base is None:
                missing.append(_point_label(config, batch, input_len, output_len))
                continue
            if min(base.measured_output_tokens_per_s, base.predicted_output_tokens_per_s) <= 0:
                continue
            m = p.measured_output_tokens_per_s / base.measured_output_tokens_per_s
            r = p.predicted_output_tokens_per_s / base.predicted_output_tokens_per_s
            error = _error_pct(r, m)
            if error is not None:
                ratios.append(RatioPoint(config, batch, input_len, output_len, m, r, error))
    median, largest, _ = error_stats([r.ratio_error_pct for r in ratios])
    return Pairs(baseline, len(ratios), median, largest, ratios, missing)
