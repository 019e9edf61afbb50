"""Accuracy regressions: every committed study (results/sweeps/<engine>-<machine>.jsonl and its further passes
<engine>-<machine>-pass<N>.jsonl, with its probed hardware results/hardware/<machine>.toml and calibration
results/calibration/<machine>.toml) is re-predicted with the current
perfmodel, uncalibrated (the probe's priors) and with the committed calibration, exactly as `archscale compare` does;
the held-out median and max |error| of output tokens/s must not grow past the figures the README reports.

Held out = what the calibration file records as left out of its fit (`harness.calibrate.compare.fit_holdout`), for both the
uncalibrated and the calibrated comparison, as in the README's table. Re-prediction is deterministic, so the only
slack is for the README's rounding to 0.1 point. A model change that makes the errors smaller passes: then update
the README's table and the figures here together (`archscale compare ... --calibration FILE` prints them).
"""

from pathlib import Path

import pytest

from harness.calibrate.compare import compare, fit_holdout
from harness.sweep.rows import load_sweeps, pass_of
from perfmodel.calibration import get_calibration
from perfmodel.hardware import load_hardware_file

RESULTS = Path(__file__).resolve().parents[3] / "results"
SLACK_PCT_POINTS = 0.5  # the README rounds to 0.1 point

# README.md, section "Calibrate and compare: the model held against what it did not see", the CPU study's table
# "output tokens/s, held-out configs (42 points, medians of 5 passes)" and its EPYC twins:
# (median |error| %, max |error| %) per calibration.
REPORTED_HELD_OUT_PCT = {
    ("torch", "cpu-xeon-2c"): {"uncalibrated": (6.1, 23.9), "calibrated": (4.1, 15.8)},
    ("torch", "cpu-epyc-2c"): {"uncalibrated": (13.0, 44.8), "calibrated": (6.8, 33.4)},
    ("torch", "cpu-epyc-2c-interleaved"): {"uncalibrated": (10.5, 27.1), "calibrated": (5.7, 17.9)},
    ("torch", "cpu-epyc-2c-interleaved-r2"): {"uncalibrated": (13.7, 35.9), "calibrated": (4.4, 18.2)},
    ("torch", "cpu-epyc-2c-interleaved-r3"): {"uncalibrated": (11.1, 39.9), "calibrated": (9.7, 23.6)},
    ("torch", "cpu-epyc-2c-interleaved-r4"): {"uncalibrated": (5.1, 26.3), "calibrated": (7.3, 24.6)},
}
# The same, drift-corrected (`make calibrate-cpu-drift-corrected`: its calibration in
# results/compare/<machine>-drift-corrected/calibration.toml, the measurements brought to the probe's machine state
# where its entry records one, else to the rows' typical state).
REPORTED_DRIFT_CORRECTED_HELD_OUT_PCT = {
    ("torch", "cpu-epyc-2c-interleaved"): {"uncalibrated": (10.5, 27.2), "calibrated": (4.2, 13.5)},
    ("torch", "cpu-epyc-2c-interleaved-r2"): {"uncalibrated": (5.9, 22.7), "calibrated": (3.0, 17.1)},
    ("torch", "cpu-epyc-2c-interleaved-r3"): {"uncalibrated": (9.5, 45.5), "calibrated": (8.9, 29.3)},
    ("torch", "cpu-epyc-2c-interleaved-r4"): {"uncalibrated": (5.6, 24.3), "calibrated": (6.6, 20.4)},
}
PREFILL_PRIOR_ABLATION = "cpu-epyc-2c-interleaved-r2-on-prefill-attention-probe-without-its-prior"
# The same, drift-corrected, on another hardware entry (the README's shape-grid tables): (engine, machine, the
# results/compare/ folder holding its calibration.toml, the hardware entry under results/) -> figures.
REPORTED_ON_OTHER_PROBE_HELD_OUT_PCT = {
    ("torch", "cpu-epyc-2c-interleaved", "cpu-epyc-2c-interleaved-with-grid",
     "compare/cpu-epyc-2c-interleaved-with-grid/hardware.toml"): {"uncalibrated": (14.7, 27.4),
                                                                  "calibrated": (3.5, 12.7)},
    ("torch", "cpu-epyc-2c-interleaved-r2", "cpu-epyc-2c-interleaved-r2-with-grid",
     "compare/cpu-epyc-2c-interleaved-r2-with-grid/hardware.toml"): {"uncalibrated": (7.0, 24.6),
                                                                     "calibrated": (3.5, 14.9)},
    ("torch", "cpu-epyc-2c-interleaved-r3", "cpu-epyc-2c-interleaved-r3-on-r2-probe",
     "hardware/cpu-epyc-2c-interleaved-r2.toml"): {"uncalibrated": (5.1, 16.1), "calibrated": (3.8, 15.3)},
    ("torch", "cpu-epyc-2c-interleaved-r3", "cpu-epyc-2c-interleaved-r3-on-r2-probe-with-grid",
     "compare/cpu-epyc-2c-interleaved-r2-with-grid/hardware.toml"): {"uncalibrated": (6.5, 17.0),
                                                                     "calibrated": (3.5, 11.0)},
    # The settling probe (README: "A probe that samples its curve until the median settles").
    ("torch", "cpu-epyc-2c-interleaved", "cpu-epyc-2c-interleaved-on-settled-probe",
     "hardware/cpu-epyc-2c-settled.toml"): {"uncalibrated": (10.2, 29.1), "calibrated": (7.7, 18.3)},
    ("torch", "cpu-epyc-2c-interleaved-r2", "cpu-epyc-2c-interleaved-r2-on-settled-probe",
     "hardware/cpu-epyc-2c-settled.toml"): {"uncalibrated": (11.1, 37.8), "calibrated": (6.2, 20.5)},
    ("torch", "cpu-epyc-2c-interleaved-r3", "cpu-epyc-2c-interleaved-r3-on-settled-probe",
     "hardware/cpu-epyc-2c-settled.toml"): {"uncalibrated": (13.1, 28.1), "calibrated": (5.9, 15.5)},
    # The probe with the prefill attention prior, and the same entry without it (README: "Prefill attention's prior").
    ("torch", "cpu-epyc-2c-interleaved-r2", "cpu-epyc-2c-interleaved-r2-on-prefill-attention-probe",
     "hardware/cpu-epyc-2c-prefill-attention.toml"): {"uncalibrated": (7.0, 23.1), "calibrated": (4.6, 16.0)},
    ("torch", "cpu-epyc-2c-interleaved-r2", PREFILL_PRIOR_ABLATION,
     f"compare/{PREFILL_PRIOR_ABLATION}/hardware.toml"): {"uncalibrated": (8.1, 23.1), "calibrated": (4.8, 15.7)},
}  # fmt: skip
HELD_OUT_POINTS = 42  # every study holds out 3 of its 6 configs × 14 workloads


def study_files(engine: str, machine: str) -> tuple[list[Path], Path, Path]:
    first = RESULTS / "sweeps" / f"{engine}-{machine}.jsonl"
    passes = sorted((RESULTS / "sweeps").glob(f"{engine}-{machine}-pass*.jsonl"))
    return [first, *passes], RESULTS / "hardware" / f"{machine}.toml", RESULTS / "calibration" / f"{machine}.toml"


def test_every_committed_sweep_has_reported_figures():
    found = {tuple(pass_of(path)[0].split("-", 1)) for path in (RESULTS / "sweeps").glob("*.jsonl")}
    assert found == set(REPORTED_HELD_OUT_PCT), "a study was added or removed: list its README figures here"


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
                f"{machine}, {label}: held-out {what} |error| of output tokens/s is {error_pct:.2f}%; the README "
                f"reports {limit_pct}% (+{SLACK_PCT_POINTS} points of slack)"
            )


# README, "The order of configs against the measurements' own order": on every study measured in passes, the model
# (uncalibrated; drift-corrected where the README says so) orders at least as many pairs of configs right as one pass
# does against the median of the other passes.
ORDER_AT_LEAST_AS_RIGHT_AS_A_PASS = [("torch", "cpu-xeon-2c", False), ("torch", "cpu-epyc-2c-interleaved", True),
                                     ("torch", "cpu-epyc-2c-interleaved-r2", True),
                                     ("torch", "cpu-epyc-2c-interleaved-r3", True),
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


# README, "The search held against measurement": (median, max) |error| of the measured against the predicted
# throughput ratio to small-base over the check's 12 ratios, drift-corrected, with the calibration the search used.
SEARCH_CHECK_ENTRY = RESULTS / "compare" / "cpu-epyc-2c-interleaved-r2-with-grid"
REPORTED_SEARCH_CHECK_RATIO_ERROR_PCT = {"cpu-epyc-2c": (5.7, 30.3), "cpu-epyc-2c-grouped-decode": (6.6, 14.1)}


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


# README, "Prefill attention's prior": the grouped-decode search check's sweeps on the probe that measured prefill
# attention, with its prior and without it (that line taken out), each calibrated on r2's study on that entry:
# (median, max) |error| of prefill time over the check's 16 points, drift-corrected.
PREFILL_PRIOR_ENTRIES = {
    "with": ("hardware/cpu-epyc-2c-prefill-attention.toml",
             "compare/cpu-epyc-2c-interleaved-r2-on-prefill-attention-probe/calibration.toml"),
    "without": (f"compare/{PREFILL_PRIOR_ABLATION}/hardware.toml", f"compare/{PREFILL_PRIOR_ABLATION}/calibration.toml"),
}  # fmt: skip
REPORTED_PREFILL_ERROR_WITH_PRIOR_PCT = {"uncalibrated": (13.1, 18.3), "calibrated": (7.4, 12.8)}


def test_the_prefill_attention_prior_brings_the_search_checks_prefill_closer():
    folder = RESULTS / "search-check" / "cpu-epyc-2c-grouped-decode"
    sweeps = [folder / "sweep.jsonl", *sorted(folder.glob("sweep-pass*.jsonl"))]
    errors = {}
    for variant, (hardware_file, calibration_file) in PREFILL_PRIOR_ENTRIES.items():
        hardware = load_hardware_file(RESULTS / hardware_file)
        data = load_sweeps(sweeps, drift_correct=True, probe_state=hardware.machine_reference)
        for label, calibration in (("uncalibrated", None), ("calibrated", RESULTS / calibration_file)):
            comparison = compare(data, hardware, get_calibration(hardware, data.engine, calibration),
                                 calibration_label=label)  # fmt: skip
            summary = next(s for s in comparison.summary if (s.metric, s.split) == ("prefill_time_s", "all"))
            assert summary.n_points == 16
            errors[variant, label] = (summary.median_abs_error_pct, summary.max_abs_error_pct)
    for label, (median_limit_pct, max_limit_pct) in REPORTED_PREFILL_ERROR_WITH_PRIOR_PCT.items():
        (median_pct, max_pct), without = errors["with", label], errors["without", label]
        assert median_pct < without[0] and max_pct < without[1], (label, errors)
        assert median_pct <= median_limit_pct + SLACK_PCT_POINTS and max_pct <= max_limit_pct + SLACK_PCT_POINTS
