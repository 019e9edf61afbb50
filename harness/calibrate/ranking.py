"""Ranking and ratios of a comparison (harness/calibrate/compare.py): does the model order configs by output tokens/s as
measured at each workload — over all pairs, and over the pairs whose repeated measurements do not overlap — how often
the measurements order them alike among themselves (one pass against the others: what the noise allows), and each
config's throughput ratio to a baseline config, measured vs predicted (what the architecture search relies on)."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from harness.calibrate.point import PointComparison
from perfmodel.errors import ArchscaleInputError


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
    n_groups_apart: int | None = None  # workloads with at least one such pair
    n_groups_right_apart: int | None = None  # of those, the ones where every such pair is ordered right
    # The measurements against themselves: each pass's order of the configs against the order of the median of the
    # other passes, at every workload where each config was measured the same n ≥ 2 times — how often one more
    # measurement, used as the prediction, gets the order right: the agreement the noise allows (not a bound on a
    # model, which is held against the median of all passes, a steadier order). None when no workload qualifies.
    n_self_pairs: int | None = None  # (pass, pair of configs) combinations
    n_self_pairs_right: int | None = None
    n_self_orders: int | None = None  # (pass, workload) combinations
    n_self_orders_right: int | None = None  # of those, the ones whose whole order matched the other passes'


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


def error_pct(predicted: float, measured_value: float) -> float | None:
    if not (measured_value > 0 and math.isfinite(predicted) and math.isfinite(measured_value)):
        return None
    return 100.0 * (predicted / measured_value - 1.0)


def error_stats(errors: list[float]) -> tuple[float | None, float | None, float | None]:
    if not errors:
        return None, None, None
    values = np.asarray(errors, dtype=np.float64)
    return float(np.median(np.abs(values))), float(np.max(np.abs(values))), float(np.median(values))


def point_label(config: str, batch: int, input_len: int, output_len: int) -> str:
    return f"{config} b={batch} in={input_len} out={output_len}"


def workloads(points: list[PointComparison]) -> dict[tuple, dict[str, PointComparison]]:
    groups: dict[tuple, dict[str, PointComparison]] = defaultdict(dict)
    for p in points:
        groups[(p.batch_size, p.input_len, p.output_len)][p.config] = p
    return dict(sorted(groups.items()))


def rank(points: list[PointComparison]) -> Ranking:
    """Does the model order configs by output tok/s as measured, at each (batch, in, out)?"""
    from scipy.stats import spearmanr

    groups, spearmans = [], []
    for (batch, input_len, output_len), by_config in workloads(points).items():
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
        groups=groups, **_apart_counts(points, groups), **_self_agreement(points),
    )  # fmt: skip


def _apart(a: list[float] | None, b: list[float] | None) -> bool:
    """Were two points measured apart: both measured more than once, one's lowest above the other's highest?"""
    return a is not None and b is not None and (a[0] > b[1] or b[0] > a[1])


def _apart_counts(points: list[PointComparison], groups: list[RankGroup]) -> dict:
    if not any(p.measured_range is not None for p in points):
        return {}  # every point measured once: the spread between measurements is unknown
    apart = [g for g in groups if g.n_pairs_apart]
    return {"n_pairs_apart": sum(g.n_pairs_apart for g in groups),
            "n_pairs_apart_right": sum(g.n_pairs_apart_right for g in groups), "n_groups_apart": len(apart),
            "n_groups_right_apart": sum(g.n_pairs_apart_right == g.n_pairs_apart for g in apart)}  # fmt: skip


def _self_agreement(points: list[PointComparison]) -> dict:
    """Leave one pass out: at each workload whose configs were all measured the same n ≥ 2 times (the i-th value of
    each from pass i), pass i's order of every pair of configs against the order of the median of the other passes
    (see Ranking.n_self_pairs)."""
    pairs = pairs_right = orders = orders_right = 0
    for by_config in workloads(points).values():
        values = [by_config[c].measured_values for c in sorted(by_config)]
        if len(values) < 2 or any(v is None for v in values) or len({len(v) for v in values}) != 1:
            continue
        runs = np.asarray(values)  # [configs, passes]
        config_pairs = list(combinations(range(len(values)), 2))
        for left_out in range(runs.shape[1]):
            one = runs[:, left_out]
            rest = np.median(np.delete(runs, left_out, axis=1), axis=1)
            right = sum(np.sign(one[i] - one[j]) == np.sign(rest[i] - rest[j]) for i, j in config_pairs)
            pairs, pairs_right = pairs + len(config_pairs), pairs_right + int(right)
            orders, orders_right = orders + 1, orders_right + int(right == len(config_pairs))
    if not orders:
        return {}
    return {"n_self_pairs": pairs, "n_self_pairs_right": pairs_right, "n_self_orders": orders,
            "n_self_orders_right": orders_right}  # fmt: skip


def default_baseline(points: list[PointComparison]) -> str:
    """The first config (sorted) measured at every (batch, in, out) of the comparison, else the first config."""
    groups = workloads(points).values()
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
    for (batch, input_len, output_len), by_config in workloads(points).items():
        base = by_config.get(baseline)
        for config, p in sorted(by_config.items()):
            if config == baseline:
                continue
            if base is None:
                missing.append(point_label(config, batch, input_len, output_len))
                continue
            if min(base.measured_output_tokens_per_s, base.predicted_output_tokens_per_s) <= 0:
                continue
            m = p.measured_output_tokens_per_s / base.measured_output_tokens_per_s
            r = p.predicted_output_tokens_per_s / base.predicted_output_tokens_per_s
            error = error_pct(r, m)
            if error is not None:
                ratios.append(RatioPoint(config, batch, input_len, output_len, m, r, error))
    median, largest, _ = error_stats([r.ratio_error_pct for r in ratios])
    return Pairs(baseline, len(ratios), median, largest, ratios, missing)
