"""`archscale gemm-curve`: each config's own GEMM factors against a probed entry's prediction (on the CPU, tiny
presets), the curve's own model predicted on its curve, the baseline's own column at zero, and one-line errors."""

import json

import pytest

from harness.cli.main import main
from harness.probe.entry import write_hardware_file
from harness.probe.gemm_curve_check import ConfigCurve
from harness.probe.measure import probe
from perfmodel.hardware import load_hardware_file


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    return write_hardware_file(probe("cpu", "float32", quick=True), tmp_path_factory.mktemp("gemm") / "local.toml")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_each_config_gets_its_own_factor_beside_the_entrys(capsys, entry):
    code, out, err = run_cli(capsys, "gemm-curve", "tiny-gqa4", "tiny-mha", "--hardware", entry, "--rounds", 2,
                             "--max-rows", 4, "--json")  # fmt: skip
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["config"] for row in rows] == ["tiny-gqa4", "tiny-mha"]
    priors = load_hardware_file(entry).calibration_priors["torch"]
    entry_curve = dict(zip(priors["gemm_curve_rows"], priors["gemm_curve_factors"], strict=True))
    for row in rows:
        assert set(row["factors"]) == {"1", "2", "4"} and all(len(v) == 2 for v in row["factors"].values())
        assert all(f > 0 for values in row["factors"].values() for f in values)
        if row["config"] == "tiny-gqa4":  # the curve's own model: the shape grid leaves its pass on the curve
            for m, factor in row["entry_factors"].items():
                assert factor == pytest.approx(entry_curve[float(m)], rel=0.02)
        assert row["baseline"] == "tiny-gqa4" and {"git_sha", "time_utc", "command"} <= set(row["metadata"])
    assert rows[0]["off_vs_baseline_pct"] == {"1": 0.0, "2": 0.0, "4": 0.0}  # the baseline against itself


def test_the_table_names_the_baseline_it_holds_configs_against(capsys, entry):
    code, out, _ = run_cli(capsys, "gemm-curve", "tiny-mha", "--baseline", "tiny-gqa4", "--hardware", entry,
                           "--rounds", 1, "--max-rows", 2)  # fmt: skip
    assert code == 0 and out.startswith("# {") and "off, tiny-gqa4" in out
    assert sum(line.startswith(("tiny-mha ", "tiny-gqa4 ")) for line in out.splitlines()) == 4  # 2 configs × 2 M


def test_a_config_named_twice_is_timed_once(capsys, entry):
    code, out, _ = run_cli(capsys, "gemm-curve", "tiny-mha", "tiny-mha", "--baseline", "tiny-mha", "--hardware", entry,
                           "--rounds", 1, "--max-rows", 1, "--json")  # fmt: skip
    assert code == 0 and [json.loads(line)["config"] for line in out.splitlines()] == ["tiny-mha"]


def test_off_by_shape_is_the_median_of_paired_rounds():
    baseline = ConfigCurve("a", {1: [3.0, 2.0, 2.4]}, {1: 3.0})
    other = ConfigCurve("b", {1: [2.0, 2.0, 2.0]}, {1: 3.0})
    assert other.off_vs_pct(baseline, 1) == pytest.approx(20.0)  # ratios 1.5, 1.0, 1.2: median 1.2
    assert other.off_pct(1) == pytest.approx(50.0) and baseline.off_pct(1) == pytest.approx(25.0)


@pytest.mark.parametrize(("argv", "message"), [
    (["nope"], "'nope' is neither a preset nor a config.json path"),
    (["tiny-mha", "--gpu", "h100-sxm"], "has no measured GEMM curve"),
])  # fmt: skip
def test_bad_input_is_one_line(capsys, entry, argv, message):
    hardware = [] if "--gpu" in argv else ["--hardware", entry]
    code, _, err = run_cli(capsys, "gemm-curve", *argv, *hardware)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_zero_rounds_is_a_usage_error(capsys, entry):
    with pytest.raises(SystemExit) as exit_info:
        main(["gemm-curve", "tiny-mha", "--rounds", "0", "--hardware", str(entry)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--rounds" in err and len(err.strip().splitlines()) == 1
