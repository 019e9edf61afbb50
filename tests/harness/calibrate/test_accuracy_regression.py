"""Accuracy regressions: every committed study (results/sweeps/<engine>-<machine>.jsonl and its further passes
<engine>-<machine>-pass<N>.jsonl, with its probed hardware results/hardware/<machine>.toml and calibration
results/calibration/<machine>.toml) is re-predicted with the current
perfmodel, uncalibrated (the probe's priors) and with the committed calibration, exactly as `archscale compare` does;
the held-out median and max |error| of output tokens/s must not grow past the figures docs/calibration.md reports.

Held out = what the calibration file records as left out of its fit (`harness.calibrate.compare.fit_holdout`), for both the
uncalibrated and the calibrated comparison, as in docs/calibration.md. Re-prediction is deterministic, so the only
slack is for the docs' rounding to 0.1 point. A model change that makes the errors smaller passes: then update
docs/calibration.md and the figures here together (`archscale compare ... --calibration FILE` prints them).
"""

from pathlib import Path

import pytest

from harness.calibrate.compare import compare, fit_holdout
from harness.sweep.rows import load_sweeps, pass_of
from perfmodel.calibration import get_calibration
from perfmodel.hardware import load_hardware_file

RESULTS = Path(__file__).resolve().parents[3] / "results"
SLACK_PCT_POINTS = 0.5  # docs/calibration.md rounds to 0.1 point

# docs/calibration.md, "Where the model stands": output tokens/s, held-out configs (42 points, medians of the
# passes), per committed study:
# (median |error| %, max |error| %) per calibration.
REPORTED_HELD_OUT_PCT = {
    ("torch", "cpu-xeon-2c"): {"uncalibrated": (6.1, 23.9), "calibrated": (4.1, 15.8)},
    ("torch", "cpu-epyc-2c-interleaved-r2"): {"uncalibrated": (13.7, 35.9), "calibrated": (4.4, 18.2)},
    ("torch", "cpu-epyc-2c-interleaved-r4"): {"uncalibrated": (5.1, 26.3), "calibrated": (7.3, 24.6)},
}
# The same, drift-corrected (`make calibrate-cpu-drift-corrected`: its calibration in
# results/compare/<machine>-drift-corrected/calibration.toml, the measurements brought to the probe's machine state
# where its entry records one, else to the rows' typical state).
REPORTED_DRIFT_CORRECTED_HELD_OUT_PCT = {
    ("torch", "cpu-epyc-2c-interleaved-r4"): {"uncalibrated": (5.6, 24.3), "calibrated": (6.6, 20.4)},
}
# The same, drift-corrected, on another hardware entry (docs/calibration.md): (engine, machine, the
# results/compare/ folder holding its calibration.toml, the hardware entry under results/) -> figures.
REPORTED_ON_OTHER_PROBE_HELD_OUT_PCT = {
    ("torch", "cpu-epyc-2c-interleaved-r2", "cpu-epyc-2c-interleaved-r2-with-grid",
     "compare/cpu-epyc-2c-interleaved-r2-with-grid/hardware.toml"): {"uncalibrated": (7.0, 24.6),
                                                                     "calibrated": (3.5, 14.9)},
}  # fmt: skip
HELD_OUT_POINTS = 42  # every study holds out 3 of its 6 configs × 14 workloads


def study_files(engine: str, machine: str) -> tuple[list[Path], Path, Path]:
    first = RESULTS / "sweeps" / f"{engine}-{machine}.jsonl"
    passes = sorted((RESULTS / "sweeps").glob(f"{engine}-{machine}-pass*.jsonl"))
    return [first, *passes], RESULTS / "hardware" / f"{machine}.toml", RESULTS / "calibration" / f"{machine}.toml"


def test_every_committed_sweep_has_reported_figures():
    found = {tuple(pass_of(path)[0].split("-", 1)) for path in (RESULTS / "sweeps").glob("*.jsonl")}
    assert found == set(REPORTED_HELD_OUT_PCT), (
        "a study was added or removed: list its figures (docs/calibration.md) here"
    )


@pytest.mark.parametrize(("engine", "machine"), sorted(REPORTED_HELD_OUT_PCT))
def test_held_out_error_of_output_tokens_per_s_has_not_grown(engine, machine):
    sweeps, hardware_file, calibration_file = study_files(engine, machine)
    check_held_out(machine, sweeps, hardware_file, calibration_file, REPORTED_HELD_OUT_PCT[(engine, machine)])


@pytest.mark.parametrize(("engine", "machine"), sorted(REPORTED_DRIFT_CORRECTED_HELD_OUT_PCT))
def test_drift_corrected_held_out_error_has_not_grown(engine, machine):
    sweeps, hardware_file, _ = study_files(engine, machine)
    calibration_file = RESULTS / "compare" / f"{machine}-drift-corrected" / "calibration.toml"
    check_held_out(machine, sweeps, hardware_file, calibration_file,
                   REPORTED_DRIFT_CORRECTED_HELD_OUT_PCT[(engine, machine)], drift_correct=True)  # fmt: skip


@pytest.mark.parametrize(("engine", "machine", "folder", "hardware"), sorted(REPORTED_ON_OTHER_PROBE_HELD_OUT_PCT))
def test_held_out_error_on_another_probe_has_not_grown(engine, machine, folder, hardware):
    sweeps, _, _ = study_files(engine, machine)
    check_held_out(machine, sweeps, RESULTS / hardware, RESULTS / "compare" / folder / "calibration.toml",
                   REPORTED_ON_OTHER_PROBE_HELD_OUT_PCT[(engine, machine, folder, hardware)], drift_correct=True)  # fmt: skip


def check_held_out(machine: str, sweeps, hardware_file, calibration_file, reported: dict, drift_correct=False):
    for path in (*sweeps, hardware_file, calibration_file):
        assert path.is_file(), f"committed study file {path} is missing"
    hardware = load_hardware_file(hardware_file)  # drift-corrected to its probe's state where it records one
    data = load_sweeps(sweeps, drift_correct=drift_correct, probe_state=hardware.machine_reference)
    holdout = fit_holdout(calibration_file, hardware.name, data.engine, data)
    assert holdout, f"{calibration_file} records no train/held-out split"
    for label, calibration in (("uncalibrated", None), ("calibrated", calibration_file)):
        comparison = compare(data, hardware, get_calibration(hardware, data.engine, calibration),
                             calibration_label=label, **holdout)  # fmt: skip
        assert not comparison.excluded, f"{label}: points set aside: {comparison.excluded}"
        summary = next(s for s in comparison.summary if (s.metric, s.split) == ("output_tokens_per_s", "holdout"))
        assert summary.n_points == HELD_OUT_POINTS
        median_limit_pct, max_limit_pct = reported[label]
        for what, error_pct, limit_pct in (("median", summary.median_abs_error_pct, median_limit_pct),
                                           ("max", summary.max_abs_error_pct, max_limit_pct)):  # fmt: skip
            assert error_pct <= limit_pct + SLACK_PCT_POINTS, (
                f"{machine}, {label}: held-out {what} |error| of output tokens/s is {error_pct:.2f}%; docs/calibration.md "
                f"reports {limit_pct}% (+{SLACK_PCT_POINTS} points of slack)"
            )


# docs/calibration.md, "Where the model stands": on every study measured in passes, the model
# (uncalibrated; drift-corrected where the docs say so) orders at least as many pairs of configs right as one pass
# does against the median of the other passes.
ORDER_AT_LEAST_AS_RIGHT_AS_A_PASS = [("torch", "cpu-xeon-2c", False), ("torch", "cpu-epyc-2c-interleaved-r2", True),
                                     ("torch", "cpu-epyc-2c-interleaved-r4", True)]  # fmt: skip


@pytest.mark.parametrize(("engine", "machine", "drift_correct"), ORDER_AT_LEAST_AS_RIGHT_AS_A_PASS)
def test_the_model_orders_configs_at_least_as_well_as_a_repeat_measurement(engine, machine, drift_correct):
    sweeps, hardware_file, _ = study_files(engine, machine)
    hardware = load_hardware_file(hardware_file)
    data = load_sweeps(sweeps, drift_correct=drift_correct, probe_state=hardware.machine_reference)
    ranking = compare(data, hardware, get_calibration(hardware, data.engine, None), calibration_label="priors").ranking
    assert ranking.n_self_pairs, "no workload measured the same number of times for every config"
    model_share = ranking.n_pairs_right / ranking.n_pairs
    pass_share = ranking.n_self_pairs_right / ranking.n_self_pairs
    assert model_share >= pass_share, (
        f"{machine}: the model orders {model_share:.0%} of pairs right, a pass {pass_share:.0%}"
    )


# docs/calibration.md, "The search held against measurement": (median, max) |error| of the measured against the predicted
# throughput ratio to small-base over the check's 12 ratios, drift-corrected, with the calibration the search used.
SEARCH_CHECK_ENTRY = RESULTS / "compare" / "cpu-epyc-2c-interleaved-r2-with-grid"
REPORTED_SEARCH_CHECK_RATIO_ERROR_PCT = {"cpu-epyc-2c-grouped-decode": (6.6, 14.1)}


@pytest.mark.parametrize("check", sorted(REPORTED_SEARCH_CHECK_RATIO_ERROR_PCT))
def test_search_check_ratio_error_has_not_grown(check):
    folder = RESULTS / "search-check" / check
    sweeps = [folder / "sweep.jsonl", *sorted(folder.glob("sweep-pass*.jsonl"))]
    hardware = load_hardware_file(SEARCH_CHECK_ENTRY / "hardware.toml")
    data = load_sweeps(sweeps, drift_correct=True, probe_state=hardware.machine_reference)
    calibration = get_calibration(hardware, data.engine, SEARCH_CHECK_ENTRY / "calibration.toml")
    pairs = compare(data, hardware, calibration, calibration_label="calibrated", baseline="small-base").pairs
    assert pairs.n_ratios == 12
    median_limit_pct, max_limit_pct = REPORTED_SEARCH_CHECK_RATIO_ERROR_PCT[check]
    assert pairs.median_abs_ratio_error_pct <= median_limit_pct + SLACK_PCT_POINTS
    assert pairs.max_abs_ratio_error_pct <= max_limit_pct + SLACK_PCT_POINTS
