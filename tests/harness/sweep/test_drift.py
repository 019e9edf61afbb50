"""harness.sweep.drift: how much of a point's pass-to-pass scatter the machine reference explains, and its paragraph in
`archscale compare`'s report."""

import json

import numpy as np
import pytest
from test_compare import row, write_rows

from harness.cli.main import main
from harness.sweep.drift import drift_summary
from harness.sweep.rows import load_sweeps


def measurement(tok_s: float, gemm_s: float, stream_s: float) -> dict:
    return {"output_tokens_per_s": tok_s, "reference_gemm_s": gemm_s, "reference_stream_s": stream_s}


def machine_bound_groups(noise: float, seed: int = 0) -> list[list[dict]]:
    """20 points × 4 passes on a machine whose speed wanders by ±30%: each measurement runs at the machine's speed
    (the reference GEMM takes 10 ms / speed), times exp(noise · N(0, 1)) of the engine's own; the stream is flat."""
    rng = np.random.default_rng(seed)
    groups = []
    for point in range(20):
        speeds = np.exp(rng.uniform(-0.3, 0.3, size=4))
        own = np.exp(noise * rng.standard_normal(4))
        groups.append(
            [measurement(100.0 * (point + 1) * s * o, 0.010 / s, 0.003) for s, o in zip(speeds, own, strict=True)]
        )
    return groups


def test_a_machine_bound_scatter_is_explained_down_to_the_engines_own_noise():
    drift = drift_summary(machine_bound_groups(noise=0.02))
    assert (drift.n_points, drift.n_measurements) == (20, 80)
    assert drift.scatter_pct > 10 and drift.gemm_correlation > 0.9
    assert drift.stream_correlation is None  # the stream never varied
    assert 1.0 < drift.unexplained_scatter_pct < 3.0  # the 2% noise of the engine's own, not the machine's 30%
    assert drift.reference_gemm_spread_pct > 40 and drift.reference_stream_spread_pct == 0


def test_scatter_the_machine_does_not_follow_is_left_unexplained():
    groups = machine_bound_groups(noise=0.0)
    rng = np.random.default_rng(1)
    for group in groups:  # the reference now moves on its own, unrelated to the measurements
        for one in group:
            one["reference_gemm_s"] = 0.010 * float(np.exp(rng.uniform(-0.3, 0.3)))
            one["reference_stream_s"] = 0.003 * float(np.exp(rng.uniform(-0.3, 0.3)))
    drift = drift_summary(groups)
    assert abs(drift.gemm_correlation) < 0.35 and abs(drift.stream_correlation) < 0.35
    assert drift.unexplained_scatter_pct > 0.85 * drift.scatter_pct


def test_nothing_to_say_without_two_measurements_with_the_reference():
    once = [[measurement(100.0, 0.01, 0.003)]]
    without = [[{"output_tokens_per_s": 100.0}, {"output_tokens_per_s": 120.0}]]  # rows from before the reference
    assert drift_summary(once) is None and drift_summary(without) is None
    mixed = [[measurement(100.0, 0.01, 0.003), {"output_tokens_per_s": 120.0}], *machine_bound_groups(0.01)[:3]]
    assert drift_summary(mixed).n_points == 3  # the point with one usable measurement is left out


PASS_SPEEDS = (1.0, 0.8, 1.1)  # the machine's speed during each of three passes


def three_passes(tmp_path, *, reference: bool = True) -> list:
    """Three passes over 2 configs × 2 batch sizes measured at PASS_SPEEDS: 1000·batch tok/s at speed 1, the times
    1/speed; the reference GEMM takes 10 ms / speed, the stream a flat 3 ms."""
    paths = []
    for number, speed in enumerate(PASS_SPEEDS, 1):
        rows = [row(c, b, 1000.0 * b * speed, 0.002 / speed, 0.0005 / speed) for c in ("tiny-mha", "tiny-gqa4")
                for b in (1, 2)]  # fmt: skip
        if reference:
            rows = [r | {"reference_gemm_s": 0.010 / speed, "reference_stream_s": 0.003} for r in rows]
        paths.append(write_rows(tmp_path / ("s.jsonl" if number == 1 else f"s-pass{number}.jsonl"), rows))
    return [str(path) for path in paths]


def test_compare_reports_the_drift_of_passes_that_carry_the_reference(tmp_path, write_probed_hardware, capsys):
    hw_path = str(write_probed_hardware(memory_bytes=2_000_000_000))
    passes = three_passes(tmp_path)
    assert main(["compare", *passes, "--hardware", hw_path]) == 0
    out = capsys.readouterr().out
    assert "Machine reference" in out and "over 12 measurements of 4 points" in out
    assert "r = +1.00 (GEMM)" in out and "0.0% rms is left" in out
    assert main(["compare", *passes, "--hardware", hw_path, "--json"]) == 0
    drift = json.loads(capsys.readouterr().out)["drift"]
    assert drift["n_points"] == 4 and drift["gemm_correlation"] == pytest.approx(1.0)


def test_drift_correct_brings_every_pass_to_the_typical_machine_state(tmp_path):
    passes = three_passes(tmp_path)
    plain, corrected = load_sweeps(passes), load_sweeps(passes, drift_correct=True)
    assert plain.drift_correction is None and all(r["measured_range"][1] / r["measured_range"][0] > 1.3
                                                  for r in plain.rows)  # fmt: skip
    correction = corrected.drift_correction
    assert correction.reference_gemm_s == pytest.approx(0.010)  # the median pass's machine state
    assert correction.exponents["output_tokens_per_s"][0] == pytest.approx(1.0)
    assert correction.exponents["tpot_s"][0] == pytest.approx(-1.0)
    for merged in corrected.rows:
        low, high = merged["measured_range"]
        assert low == pytest.approx(high) == pytest.approx(1000.0 * merged["batch_size"])
        assert merged["tpot_s"] == pytest.approx(0.0005) and merged["ttft_s"] == pytest.approx(0.002)


def test_calibrate_records_the_drift_correction_and_refuses_rows_without_the_reference(
    tmp_path, write_probed_hardware, capsys
):
    from perfmodel.calibration import load_calibration_file, read_toml

    hw_path = str(write_probed_hardware(memory_bytes=2_000_000_000))
    out = tmp_path / "cal.toml"
    argv = ["calibrate", *three_passes(tmp_path), "--hardware", hw_path, "--out", str(out)]
    assert main([*argv, "--drift-correct"]) == 0
    assert "Drift-corrected: measurements brought to" in capsys.readouterr().out
    recorded = read_toml(out, "calibration file")["local-cpu"]["torch"]["drift_correction"]
    assert recorded["reference_gemm_s"] == pytest.approx(0.010) and "tpot_s" in recorded["exponents"]
    assert load_calibration_file(out)["local-cpu"]["torch"].calibrated  # the loader takes the record
    passes = argv[1:-4]
    assert main(["compare", *passes, "--hardware", hw_path, "--calibration", str(out)]) == 0
    assert "fitted on drift-corrected measurements: compare with --drift-correct" in capsys.readouterr().out
    assert main(["compare", *passes, "--hardware", hw_path, "--calibration", str(out), "--drift-correct"]) == 0
    assert "warning" not in capsys.readouterr().out
    older = tmp_path / "older"
    older.mkdir()
    before = out.read_bytes()
    code = main([*argv[:1], *three_passes(older, reference=False), *argv[-4:], "--drift-correct"])
    err = capsys.readouterr().err
    assert code == 2 and "no machine reference" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_drift_correct_brings_measurements_to_the_probes_machine_state(tmp_path, write_probed_hardware, capsys):
    """The hardware entry records the machine reference of its probe (5 ms: a machine twice as fast as the rows'
    median pass): measurements are brought there, where the uncalibrated priors were measured."""
    passes = three_passes(tmp_path)
    data = load_sweeps(passes, drift_correct=True, probe_state=(0.005, 0.003))
    assert data.drift_correction.state == "of the probe"
    for merged in data.rows:
        assert merged["output_tokens_per_s"] == pytest.approx(2000.0 * merged["batch_size"])
        assert merged["tpot_s"] == pytest.approx(0.00025)
    hw_path = str(write_probed_hardware(memory_bytes=2_000_000_000, machine_reference=(0.005, 0.003)))
    assert main(["compare", *passes, "--hardware", hw_path, "--drift-correct", "--json"]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    assert point["measured_output_tokens_per_s"] == pytest.approx(2000.0 * point["batch_size"])


@pytest.mark.parametrize("reference", [{"gemm_s": 0.01}, {"gemm_s": -1.0, "stream_s": 0.003}, "fast"])
def test_a_bad_machine_reference_in_a_hardware_file_is_one_line(tmp_path, write_probed_hardware, reference):
    from harness.toml_io import dumps
    from perfmodel.calibration import read_toml
    from perfmodel.errors import ArchscaleInputError
    from perfmodel.hardware import load_hardware_file

    path = write_probed_hardware()
    entry = read_toml(path, "hardware file")
    entry["local-cpu"]["machine_reference"] = reference
    path.write_text(dumps(entry))
    with pytest.raises(ArchscaleInputError, match="machine_reference"):
        load_hardware_file(path)
