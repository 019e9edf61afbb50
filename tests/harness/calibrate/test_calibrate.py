"""`archscale calibrate`: recovers known factors from a synthetic sweep, holds out what it should, identifies only
what the points can identify, and writes a calibration file that predict reads back."""

import json
from dataclasses import replace

import numpy as np
import pytest

from harness.calibrate.fit import CLASS_FACTORS, FACTORS, calibrate, choose_split, output_tokens_errors_pct
from harness.cli.main import main
from harness.sweep.rows import arch_batch, load_sweeps
from perfmodel import PRESETS, ArchscaleInputError
from perfmodel.calibration import get_calibration, load_calibration_file
from perfmodel.hardware import load_hardware_file

TRUE = {"compute_efficiency": 0.55, "memory_efficiency": 0.7, "gemm_half_efficiency_tokens": 24.0,
        "kernel_launch_overhead_s": 8e-6, "step_overhead_s": 3e-4}  # fmt: skip
CONFIGS = [
    "tiny-mha",
    "tiny-gqa4",
    "small-base",
    "small-narrow",
    "small-kv3",
    "small-wide",
    "qwen3-0.6b",
]  # 2, 8, 28 layers


@pytest.fixture
def toy(write_probed_hardware):
    path = write_probed_hardware("toy-cpu", display_name="toy CPU", peak_fp32=3.0e11, launch_s=1e-6, step_s=2e-5)
    return path, load_hardware_file(path)


def synthetic_sweep(path, hardware, factors, noise=0.02, seed=0, configs=CONFIGS, batches=(1, 4, 16, 64),
                    lengths=((256, 16), (64, 64))):  # fmt: skip
    """Rows as `archscale sweep` writes them, 'measured' = the model with `factors` times log-normal noise."""
    rng = np.random.default_rng(seed)
    truth = replace(get_calibration(hardware, "torch"), **factors)
    rows = []
    for name in configs:
        arch = PRESETS[name]
        for batch in batches:
            for input_len, output_len in lengths:
                rows.append({"config": name, "engine": "torch", "device": "cpu", "dtype": "float32", "status": "ok",
                             "attention": "torch", "batch_size": batch, "input_len": input_len,
                             "output_len": output_len, "hardware": hardware.name,
                             "arch": {f: getattr(arch, f) for f in ("d_model", "n_layer", "n_head", "n_kv_head",
                                      "d_head", "d_ff", "vocab", "tie_embeddings", "qkv_bias", "qk_norm")},
                             "metadata": {"cpu_model": "toy", "cpu_count_logical": 2}})  # fmt: skip
    from harness.sweep.rows import predict_rows

    est = predict_rows(rows, hardware, truth)
    for i, row in enumerate(rows):
        prefill_noise, tpot = np.exp(rng.normal(0, noise)), est.tpot_s[i] * np.exp(rng.normal(0, noise))
        prefill = est.prefill_time_s[i] * prefill_noise
        total = prefill + (row["output_len"] - 1) * tpot
        row.update(prefill_time_s=prefill, ttft_s=est.ttft_s[i] * prefill_noise, tpot_s=tpot, total_time_s=total,
                   output_tokens_per_s=row["batch_size"] * row["output_len"] / total,
                   total_tokens_per_s=row["batch_size"] * (row["input_len"] + row["output_len"]) / total)  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_recovers_known_factors_within_their_standard_errors(tmp_path, toy):
    _, hardware = toy
    data = load_sweeps([synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE, noise=0.01)])
    split = choose_split(data, train_configs=CONFIGS)
    fit = calibrate(data, hardware, get_calibration(hardware, "torch"), split)
    by_name = {f.name: f for f in fit.factors}
    for name, true_value in TRUE.items():
        factor = by_name[name]
        assert factor.status == "fitted", factor
        assert abs(factor.value - true_value) <= 3 * factor.std_error, factor
    for name in ("compute_efficiency", "memory_efficiency", "gemm_half_efficiency_tokens"):  # pinned down tightly
        assert by_name[name].std_error < 0.1 * by_name[name].value
    # the truth has no GEMV regime: none is chosen, and its efficiency is not fitted
    assert by_name["gemv_max_tokens"].value == 0 and by_name["gemv_memory_efficiency"].std_error is None
    assert fit.rms_log_error_fit < 0.02 < fit.rms_log_error_prior


def test_without_noise_the_fit_is_exact(tmp_path, toy):
    _, hardware = toy
    data = load_sweeps([synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE, noise=0.0)])
    fit = calibrate(data, hardware, get_calibration(hardware, "torch"), choose_split(data, train_configs=CONFIGS))
    by_name = {f.name: f for f in fit.factors}
    for name, true_value in TRUE.items():
        assert by_name[name].value == pytest.approx(true_value, rel=1e-3)


def test_a_factor_the_points_cannot_see_is_held_at_its_prior(tmp_path, toy):
    """Every config with the same layer count: per-launch and per-step overhead move every point the same way."""
    _, hardware = toy
    same_depth = ["small-base", "small-narrow", "small-kv3", "small-wide"]
    data = load_sweeps([synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE, configs=same_depth)])
    prior = get_calibration(hardware, "torch")
    fit = calibrate(data, hardware, prior, choose_split(data, train_configs=same_depth))
    held = {f.name: f for f in fit.factors if f.std_error is None}
    assert (
        "kernel_launch_overhead_s" in held and held["kernel_launch_overhead_s"].value == prior.kernel_launch_overhead_s
    )
    base_held = set(held) - {"gemv_max_tokens", "gemv_memory_efficiency"} - set(CLASS_FACTORS)
    assert base_held <= {"kernel_launch_overhead_s", "step_overhead_s"}
    assert {f.name for f in fit.factors if f.status == "fitted"} >= {"compute_efficiency", "memory_efficiency"}
    assert fit.rms_log_error_fit < 0.03  # what is held is absorbed by the rest: the points are still fitted


def test_operator_class_efficiencies_are_added_only_where_they_fit_significantly_better(tmp_path, toy):
    """Truth with attention prefill at a quarter of the GEMM compute efficiency: forward selection adds that class
    factor and recovers it; the classes that do follow their GEMM figure in the truth stay unset."""
    _, hardware = toy
    truth = {**TRUE, "attention_prefill_compute_efficiency": 0.55 / 4}
    data = load_sweeps([synthetic_sweep(tmp_path / "s.jsonl", hardware, truth, noise=0.01,
                                        batches=(1, 4, 16, 64), lengths=((256, 16), (64, 64), (1024, 4)))])  # fmt: skip
    fit = calibrate(data, hardware, get_calibration(hardware, "torch"), choose_split(data, train_configs=CONFIGS))
    by_name = {f.name: f for f in fit.factors}
    prefill = by_name["attention_prefill_compute_efficiency"]
    assert prefill.status == "fitted" and abs(prefill.value - 0.55 / 4) <= 3 * prefill.std_error
    assert fit.calibration.elementwise_memory_efficiency is None  # follows memory_efficiency, as in the truth
    assert fit.calibration.attention_decode_memory_efficiency is None
    plain = calibrate(load_sweeps([synthetic_sweep(tmp_path / "p.jsonl", hardware, TRUE, noise=0.01)]), hardware,
                      get_calibration(hardware, "torch"), choose_split(data, train_configs=CONFIGS))  # fmt: skip
    assert all(getattr(plain.calibration, name) is None for name in CLASS_FACTORS)  # nothing to add: none added


def test_a_measured_gemm_curve_is_kept_and_only_its_level_fitted(tmp_path, write_probed_hardware, capsys):
    """A probed machine's GEMM curve (a kernel switch between M = 2 and 4 no M½ follows) is its shape: calibrate
    fits the compute and memory levels on top of it, leaves the two-number small-M model off, and writes the curve
    into the calibration file, from which predict reads it back."""
    curve = {1: 2.2, 2: 2.0, 4: 0.9, 8: 0.6, 16: 0.7, 64: 0.85}
    path = write_probed_hardware("curve-cpu", peak_fp32=3.0e11, launch_s=1e-6, step_s=2e-5, gemm_curve=curve)
    hardware = load_hardware_file(path)
    truth = {"compute_efficiency": 0.55, "memory_efficiency": 0.7, "kernel_launch_overhead_s": 8e-6,
             "step_overhead_s": 3e-4}  # fmt: skip
    sweep = synthetic_sweep(tmp_path / "s.jsonl", hardware, truth, noise=0.01)
    out = tmp_path / "cal.toml"
    assert main(["calibrate", str(sweep), "--hardware", str(path), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "off: the measured GEMM curve (gemm_curve_rows) replaces it" in report
    fit = calibrate(load_sweeps([sweep]), hardware, get_calibration(hardware, "torch"),
                    choose_split(load_sweeps([sweep])))  # fmt: skip
    by_name = {f.name: f for f in fit.factors}
    for name in ("compute_efficiency", "memory_efficiency"):
        assert (
            by_name[name].status == "fitted" and abs(by_name[name].value - truth[name]) <= 3 * by_name[name].std_error
        )
    assert all(by_name[n].std_error is None for n in ("gemm_half_efficiency_tokens", "gemv_memory_efficiency"))
    cal = load_calibration_file(out)["curve-cpu"]["torch"]
    assert cal.gemm_curve_rows == tuple(map(float, curve)) and cal.gemm_curve_factors == tuple(curve.values())
    assert (cal.gemm_half_efficiency_tokens, cal.gemv_max_tokens) == (0.0, 0.0)
    with pytest.raises(ArchscaleInputError, match="leaves nothing to fit"):
        calibrate(load_sweeps([sweep]), hardware, get_calibration(hardware, "torch"), choose_split(load_sweeps([sweep])),
                  factors=("gemm_half_efficiency_tokens",))  # fmt: skip


def test_default_split_holds_out_whole_configs_and_says_which(tmp_path, toy):
    _, hardware = toy
    data = load_sweeps([synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE)])
    split = choose_split(data)
    assert split.by == "config" and set(split.train) | set(split.holdout) == set(CONFIGS)
    assert split.holdout and not set(split.train) & set(split.holdout)
    by_batch = choose_split(data, holdout_batch_sizes=[64])
    assert by_batch.by == "batch_size" and by_batch.train == [1, 4, 16] and by_batch.holdout == [64]


def test_cli_writes_a_calibration_that_predict_reads(tmp_path, toy, capsys):
    hw_path, hardware = toy
    sweep = synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE)
    out = tmp_path / "cal.toml"
    code = main(["calibrate", str(sweep), "--hardware", str(hw_path), "--holdout-configs", "small-wide,tiny-gqa4",
                 "--out", str(out)])  # fmt: skip
    report, err = capsys.readouterr()
    assert code == 0 and "Held out configs: small-wide, tiny-gqa4" in report, err
    cal = load_calibration_file(out)["toy-cpu"]["torch"]
    assert cal.calibrated and cal.compute_efficiency == pytest.approx(0.55, rel=0.1)
    import tomllib

    table = tomllib.loads(out.read_text())["toy-cpu"]["torch"]
    assert table["holdout_configs"] == ["small-wide", "tiny-gqa4"] and table["n_points"] == 40
    assert {"compute_efficiency", "memory_efficiency"} <= set(table["std_errors"]) <= set(FACTORS)
    assert table["gemv_max_tokens_tried"] == [0, 1, 2, 4]
    assert set(table["fitted"]) == set(table["std_errors"]) and str(sweep) in table["sweep_sha256"]
    assert table["metadata"]["git_sha"]
    code = main(["predict", "small-mha", "--hardware", str(hw_path), "--dtype", "float32", "--batch-size", "4",
                 "--input-len", "64", "--output-len", "16", "--calibration", str(out), "--json"])  # fmt: skip
    row = json.loads(capsys.readouterr().out)
    assert code == 0 and row["calibrated"] is True and row["calibration_source"] == str(out)
    # a second engine's table merges into the same file, the first one kept
    code = main(["calibrate", str(sweep), "--hardware", str(hw_path), "--out", str(out)])
    assert code == 0 and load_calibration_file(out)["toy-cpu"]["torch"].calibrated


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--holdout-configs", "nope"], "nope not in the sweep files"),
        (["--engine", "vllm"], "the sweep files measured torch"),
    ],
)
def test_bad_calibrate_arguments_are_one_line(tmp_path, toy, capsys, extra, message):
    hw_path, hardware = toy
    sweep = synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE)
    assert main(["calibrate", str(sweep), "--hardware", str(hw_path), "--out", str(tmp_path / "c.toml"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not (tmp_path / "c.toml").exists()


def test_mixed_machines_and_unmeasured_rows(tmp_path, toy, capsys):
    hw_path, hardware = toy
    first = synthetic_sweep(tmp_path / "a.jsonl", hardware, TRUE, configs=["tiny-mha"])
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    rows[0]["status"], rows[0]["message"] = "oom", "too big"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_sweeps([first])
    assert len(data.rows) == len(rows) - 1 and "status oom (too big)" in data.excluded[0]
    other = tmp_path / "b.jsonl"
    other.write_text("".join(json.dumps({**r, "metadata": {"cpu_model": "other", "cpu_count_logical": 64}}) + "\n"
                             for r in rows[1:]))  # fmt: skip
    assert main(["calibrate", str(first), str(other), "--hardware", str(hw_path)]) == 2
    assert "mix machines" in capsys.readouterr().err


def test_an_existing_corrupt_calibration_file_is_left_alone(tmp_path, toy, capsys):
    hw_path, hardware = toy
    sweep = synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE)
    out = tmp_path / "cal.toml"
    out.write_text("[broken\n")
    assert main(["calibrate", str(sweep), "--hardware", str(hw_path), "--out", str(out)]) == 2
    assert out.read_text() == "[broken\n" and "malformed TOML" in capsys.readouterr().err


def test_arch_batch_uses_the_engines_dtype():
    rows = [{"arch": {f: getattr(PRESETS["tiny-mha"], f) for f in ("d_model", "n_layer", "n_head", "n_kv_head",
             "d_head", "d_ff", "vocab", "tie_embeddings", "qkv_bias", "qk_norm")}, "dtype": d}
            for d in ("float32", "bfloat16")]  # fmt: skip
    batch = arch_batch(rows)
    assert list(batch.dtype_bytes) == [4, 2]


def test_a_gemv_regime_in_the_data_is_found(tmp_path, toy):
    """Decode at batch 1-2 streaming weights at its own efficiency (as CPU BLAS does): the fit picks the threshold
    and recovers that efficiency."""
    _, hardware = toy
    truth = {**TRUE, "gemv_max_tokens": 2.0, "gemv_memory_efficiency": 0.9}
    rows = synthetic_sweep(tmp_path / "s.jsonl", hardware, truth, noise=0.01, batches=(1, 2, 4, 16, 64))
    data = load_sweeps([rows])
    fit = calibrate(data, hardware, get_calibration(hardware, "torch"), choose_split(data, train_configs=CONFIGS))
    by_name = {f.name: f for f in fit.factors}
    assert by_name["gemv_max_tokens"].value == 2
    gemv = by_name["gemv_memory_efficiency"]
    assert gemv.status == "fitted" and abs(gemv.value - 0.9) <= 3 * gemv.std_error


def _throughput_only(path):
    """The sweep's rows as vLLM/SGLang or a published table give them: the run's output tokens/s alone."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.update(prefill_time_s=None, tpot_s=None, ttft_s=None, total_time_s=None)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_throughput_only_rows_fit_the_factors_they_identify(tmp_path, toy):
    """Rows without prefill time or TPOT: the fit runs on log(predicted / measured output tokens/s) and recovers the
    factors it is allowed to fit; the held-out configs are predicted as well as the training ones."""
    _, hardware = toy
    truth = {"memory_efficiency": 0.6, "step_overhead_s": 5e-4}
    sweep = _throughput_only(synthetic_sweep(tmp_path / "s.jsonl", hardware, truth, noise=0.005))
    data = load_sweeps([sweep])
    assert len(data.rows) == len(CONFIGS) * 8 and not data.excluded
    fit = calibrate(data, hardware, get_calibration(hardware, "torch"), choose_split(data),
                    factors=("memory_efficiency", "step_overhead_s"))  # fmt: skip
    assert {r["phase"] for r in fit.residuals} == {"throughput"}
    by_name = {f.name: f for f in fit.factors}
    for name, true_value in truth.items():
        assert by_name[name].status == "fitted" and abs(by_name[name].value - true_value) <= 3 * by_name[name].std_error
    assert by_name["compute_efficiency"].status == "held at prior (not in --factors)"
    held = [row for row in data.rows if not fit.split.is_train(row)]
    assert held and np.median(np.abs(output_tokens_errors_pct(held, hardware, fit.calibration))) < 2.0


def test_a_single_config_is_split_by_workload(tmp_path, toy, capsys):
    hw_path, hardware = toy
    lengths = ((256, 16), (64, 64), (512, 32))
    sweep = synthetic_sweep(tmp_path / "s.jsonl", hardware, TRUE, configs=["small-base"], lengths=lengths)
    split = choose_split(load_sweeps([sweep]))
    assert split.by == "workload" and split.train == ["64/64", "512/32"] and split.holdout == ["256/16"]
    out = tmp_path / "cal.toml"
    assert main(["calibrate", str(sweep), "--hardware", str(hw_path), "--holdout-workloads", "64/64", "--out",
                 str(out), "--factors", "compute_efficiency,memory_efficiency"]) == 0  # fmt: skip
    assert "Held out workloads: 64/64" in capsys.readouterr().out
    import tomllib

    table = tomllib.loads(out.read_text())["toy-cpu"]["torch"]
    assert table["holdout_workloads"] == ["64/64"] and table["allowed_factors"] == ["compute_efficiency",
                                                                                      "memory_efficiency"]  # fmt: skip
    assert main(["compare", str(sweep), "--hardware", str(hw_path), "--calibration", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["holdout_workloads"] == ["64/64"]
    assert {(p["input_len"], p["output_len"]) for p in report["points"] if p["split"] == "holdout"} == {(64, 64)}


def test_the_factors_calibrate_fits_are_the_ones_a_shipped_fit_carries_over():
    """perfmodel.calibration.FITTED_FIELDS (what an adopted fit replaces in the engine's priors) is what calibrate
    fits, plus the GEMV threshold it chooses."""
    from perfmodel.calibration import FITTED_FIELDS

    assert set(FITTED_FIELDS) == set(FACTORS) | {"gemv_max_tokens"}
