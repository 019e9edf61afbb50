"""`compare`: the throughput model against measured sweep rows — errors, ranking of configs, ratios to a baseline.

Every measured row is re-predicted with the current model (`harness.sweep.rows.predict_rows`) for the hardware
and calibration given, not read from the row's stored `predicted`. The result (`Comparison`, plain dataclasses)
holds per point the measured and predicted output tokens/s, TTFT (mean over requests), a full wave's prefill time
and TPOT with their signed errors (100·(predicted/measured − 1), TPOT only where output_len > 1); summaries of
|error| over all points and, when the calibration records which configs it was fitted on, over training and
held-out points separately; how well the model orders configs at each workload (what a search relies on: order
right, pairwise concordance, Spearman); and the throughput ratio of every config to a baseline config, measured vs
predicted (those two in harness/calibrate/ranking.py). A point measured more than once is compared at its median, with
the spread of its measurements and, where rows carry the machine reference, how much of that spread the machine's
drift explains (harness/sweep/drift.py). Points the comparison cannot use are listed in `excluded` with the reason, never
mixed in. `harness.cli.compare.format_report` renders it as text.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.calibrate.point import PointComparison
from harness.calibrate.ranking import Pairs, Ranking, error_pct, error_stats, point_label, rank, ratios_to_baseline
from harness.sweep.drift import DriftCorrection, DriftSummary
from harness.sweep.rows import SPLIT_KEYS, SweepData, measured, predict_rows, split_value
from perfmodel.calibration import Calibration, read_toml
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import Hardware

# (key in rows and estimates, label in reports)
METRICS = (("output_tokens_per_s", "out tok/s"), ("ttft_s", "TTFT"), ("prefill_time_s", "prefill"), ("tpot_s", "TPOT"))


@dataclass
class MetricSummary:
    metric: str  # "output_tokens_per_s", "ttft_s", "prefill_time_s" or "tpot_s"
    split: str  # "all", "train" or "holdout"
    n_points: int
    median_abs_error_pct: float | None
    max_abs_error_pct: float | None
    median_error_pct: float | None  # signed: > 0 means the model predicts too high


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
    # How much of that spread the machine's own drift explains (harness/sweep/drift.py); None: no machine reference
    drift: DriftSummary | None = None
    drift_correction: DriftCorrection | None = None  # the measurements compared were brought to one machine state

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


def calibration_record(calibration_file: str | Path, hardware: str, engine: str) -> dict:
    """The [<hardware>.<engine>] table of a calibration file as written, with what the fit recorded about itself."""
    raw = read_toml(Path(calibration_file).expanduser(), "calibration file")
    entry = raw.get(hardware, {}).get(engine) if isinstance(raw.get(hardware), dict) else None
    if not isinstance(entry, dict):
        raise ArchscaleInputError(f"{calibration_file} has no [{hardware}.{engine}] calibration")
    return entry


def fit_holdout(calibration_file: str | Path, hardware: str, engine: str, data: SweepData) -> dict:
    """What a calibration file's fit did not train on, as keyword arguments of `compare`: `holdout_configs`,
    `holdout_batch_sizes` or `holdout_workloads` (what `archscale calibrate` records in [<hardware>.<engine>]:
    `train_<what>`, else the `holdout_<what>` list), or {} when the file records no split."""
    entry = calibration_record(calibration_file, hardware, engine)
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
            excluded.append(f"{point_label(*key)}: a second row for this point (shape_hash {row.get('shape_hash')}; "
                            f"the first had {seen[key]}): only the first is compared")  # fmt: skip
            continue
        seen[key] = row.get("shape_hash")
        rows.append(row)
        labels.append(label)
    est = predict_rows(rows, hardware, calibration)
    kept = []
    for i, row in enumerate(rows):
        if not est.feasible[i]:
            excluded.append(f"{point_label(labels[i], row['batch_size'], row['input_len'], row['output_len'])}: "
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
            values[key] = (m, p, None if m is None else error_pct(p, m))
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
            measured_values=row.get("measured_values"),
        ))  # fmt: skip
    return Comparison(
        machine=data.machine, engine=data.engine, hardware=hardware.name,
        hardware_display_name=hardware.display_name, calibration_label=calibration_label,
        calibrated=calibration.calibrated, holdout_configs=holdout, holdout_batch_sizes=holdout_batches,
        holdout_workloads=holdout_shapes,
        sweep_sha256=dict(data.sha256), points=points, summary=summarize(points, split=has_split), ranking=rank(points),
        pairs=ratios_to_baseline(points, baseline), excluded=excluded, warnings=notes, **_spread(points),
        drift=data.drift, drift_correction=data.drift_correction,
    )  # fmt: skip


def _spread(points: list[PointComparison]) -> dict:
    spreads = [p.measured_spread_pct for p in points if p.measured_spread_pct is not None]
    if not spreads:
        return {}
    return {"n_repeated_points": len(spreads), "median_measured_spread_pct": float(np.median(spreads)),
            "max_measured_spread_pct": float(np.max(spreads))}  # fmt: skip


def summarize(points: list[PointComparison], *, split: bool) -> list[MetricSummary]:
    """Median and max |error| per metric, over all points, then over training and held-out points."""
    summary = []
    for name in ("all", "train", "holdout") if split else ("all",):
        chosen = [p for p in points if name == "all" or p.split == name]
        for key, _ in METRICS:
            errors = [e for p in chosen if (e := getattr(p, f"{key}_error_pct")) is not None]
            summary.append(MetricSummary(key, name, len(errors), *error_stats(errors)))
    return summary
