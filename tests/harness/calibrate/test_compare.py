"""`archscale compare` and harness.calibrate.compare: errors against the model's own predictions, ranking right and wrong,
ratios to a baseline, the held-out split of a calibration file, exclusions with a note, one-line input errors,
strict JSON and the three PNGs. Rows are written by hand here (known measured values), on a toy probed machine."""

import json
import pickle
from dataclasses import replace

import pytest

from harness.calibrate.compare import compare, fit_holdout
from harness.cli.main import main
from harness.sweep.rows import load_sweeps
from perfmodel import PRESETS, predict
from perfmodel.arch import ARCH_FIELDS
from perfmodel.calibration import get_calibration
from perfmodel.hardware import load_hardware_file

CALIBRATION = """\
[local-cpu.torch]
compute_efficiency = 0.5
memory_efficiency = 0.6
kernel_launch_overhead_s = 5e-6
step_overhead_s = 1e-4
gpu_memory_utilization = 0.5
workspace_bytes = 268435456
calibrated = true
train_configs = ["tiny-mha", "small-base"]
holdout_configs = ["tiny-gqa4"]
"""

IN, OUT = 32, 8


@pytest.fixture
def hw_path(write_probed_hardware):
    """2 GB of memory, so that llama-3.2-1b in fp32 does not fit."""
    return write_probed_hardware(memory_bytes=2_000_000_000)


def predicted(config, batch, hw_path, calibration_file=None, output_len=OUT):
    arch = replace(PRESETS[config], dtype_bytes=4)
    return predict(arch, load_hardware_file(hw_path), batch_size=batch, input_len=IN, output_len=output_len,
                   engine="torch", calibration_file=calibration_file)  # fmt: skip


def row(config, batch, tok_s, ttft_s, tpot_s, *, output_len=OUT, status="ok", cpu="Toy CPU", hardware="local-cpu",
        prefill_time_s=None):  # fmt: skip
    """A sweep row; the wave's prefill time defaults to the mean TTFT (one prefill forward, no wait)."""
    arch = PRESETS[config]
    return {
        "config": config, "shape_hash": "0123456789", "engine": "torch", "device": "cpu", "dtype": "float32",
        "attention": "torch", "batch_size": batch, "input_len": IN, "output_len": output_len, "status": status,
        "message": "" if status == "ok" else "CUDA out of memory", "output_tokens_per_s": tok_s,
        "total_tokens_per_s": tok_s * (IN + output_len) / output_len, "ttft_s": ttft_s, "tpot_s": tpot_s,
        "prefill_time_s": ttft_s if prefill_time_s is None else prefill_time_s, "concurrency": batch, "waves": 1, "hardware": hardware, "predicted": None,
        "arch": {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")},
        "metadata": {"cpu_model": cpu, "cpu_count_logical": 2, "gpu_name": None},
    }  # fmt: skip


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scaled(config, batch, hw_path, factor, **kw):
    """A row measured `factor` times the model's speed: tok/s · factor, TTFT and TPOT / factor."""
    p = predicted(config, batch, hw_path, output_len=kw.get("output_len", OUT))
    return row(config, batch, p.output_tokens_per_s * factor, p.ttft_s / factor, p.tpot_s / factor,
               prefill_time_s=p.prefill_time_s / factor, **kw)  # fmt: skip


def run_cli(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def comparison_of(paths, hw_path, calibration_file=None, **kw):
    data = load_sweeps(paths)
    hardware = load_hardware_file(hw_path)
    calibration = get_calibration(hardware, data.engine, calibration_file)
    return compare(data, hardware, calibration, calibration_label="test", **kw)


def test_errors_are_predicted_over_measured_from_the_current_model(tmp_path, hw_path):
    # Stored `predicted` is None: compare must predict again. Hand-picked measured values.
    path = write_rows(tmp_path / "s.jsonl", [row("tiny-mha", 1, 1000.0, 0.002, 0.0005),
                                             row("tiny-mha", 4, 2500.0, 0.010, 0.0015)])  # fmt: skip
    c = comparison_of([path], hw_path)
    for point, (batch, tok_s, ttft, tpot) in zip(c.points, [(1, 1000.0, 0.002, 0.0005), (4, 2500.0, 0.010, 0.0015)],
                                                 strict=True):  # fmt: skip
        p = predicted("tiny-mha", batch, hw_path)
        assert point.predicted_output_tokens_per_s == pytest.approx(p.output_tokens_per_s)
        assert point.output_tokens_per_s_error_pct == pytest.approx(100 * (p.output_tokens_per_s / tok_s - 1))
        assert point.ttft_s_error_pct == pytest.approx(100 * (p.ttft_s / ttft - 1))
        assert point.tpot_s_error_pct == pytest.approx(100 * (p.tpot_s / tpot - 1))
        assert point.split == "uncalibrated"
    errors = [abs(p.output_tokens_per_s_error_pct) for p in c.points]
    (summary,) = [s for s in c.summary if s.metric == "output_tokens_per_s"]
    assert (summary.split, summary.n_points) == ("all", 2)
    assert summary.median_abs_error_pct == pytest.approx(sum(errors) / 2)
    assert summary.max_abs_error_pct == pytest.approx(max(errors))
    assert c.holdout_configs is None and pickle.loads(pickle.dumps(c)) == c


def test_tpot_is_not_compared_for_one_output_token(tmp_path, hw_path):
    path = write_rows(tmp_path / "s.jsonl", [scaled("tiny-mha", 2, hw_path, 0.5, output_len=1)])
    (point,) = comparison_of([path], hw_path).points
    assert point.tpot_s_error_pct is None and point.measured_tpot_s is None
    assert point.output_tokens_per_s_error_pct == pytest.approx(100.0)  # measured at half the predicted speed


def test_ranking_right_and_wrong(tmp_path, hw_path):
    configs = ["small-base", "tiny-gqa4", "tiny-mha"]
    at1 = {c: predicted(c, 1, hw_path).output_tokens_per_s for c in configs}
    order = sorted(configs, key=at1.get, reverse=True)
    rows = [scaled(c, 1, hw_path, 0.8) for c in configs]  # batch 1: same order as the model
    at4 = {c: predicted(c, 4, hw_path).output_tokens_per_s for c in configs}
    order4 = sorted(configs, key=at4.get, reverse=True)
    # batch 4: the model's two fastest measured the other way round (top one slower than the second)
    tok_s = {order4[0]: at4[order4[1]] * 0.9, order4[1]: at4[order4[1]], order4[2]: at4[order4[2]] * 0.5}
    rows += [row(c, 4, tok_s[c], 0.01, 0.001) for c in configs]
    c = comparison_of([write_rows(tmp_path / "s.jsonl", rows)], hw_path)
    r = c.ranking
    right, wrong = r.groups
    assert right.order_right and right.predicted_order == order and right.spearman == pytest.approx(1.0)
    assert not wrong.order_right and wrong.measured_order == [order4[1], order4[0], order4[2]]
    assert (wrong.n_pairs, wrong.n_pairs_right) == (3, 2) and wrong.spearman == pytest.approx(0.5)
    assert (r.n_groups, r.n_groups_right, r.share_groups_right) == (2, 1, 0.5)
    assert r.pairwise_concordance == pytest.approx(5 / 6) and r.mean_spearman == pytest.approx(0.75)


def test_ratios_to_the_baseline(tmp_path, hw_path, capsys):
    rows = [scaled("tiny-gqa4", 1, hw_path, 1.0), scaled("tiny-gqa4", 2, hw_path, 1.0),
            scaled("tiny-mha", 1, hw_path, 0.5), scaled("tiny-mha", 2, hw_path, 0.8),
            scaled("small-base", 2, hw_path, 1.0)]  # fmt: skip
    path = write_rows(tmp_path / "s.jsonl", rows)
    c = comparison_of([path], hw_path)
    assert c.pairs.baseline == "tiny-gqa4"  # small-base is first in sorted order but not measured at batch 1
    by_key = {(x.config, x.batch_size): x for x in c.pairs.ratios}
    assert set(by_key) == {("tiny-mha", 1), ("tiny-mha", 2), ("small-base", 2)}
    for batch, factor in ((1, 0.5), (2, 0.8)):
        x = by_key[("tiny-mha", batch)]
        expected = predicted("tiny-mha", batch, hw_path).output_tokens_per_s / predicted(
            "tiny-gqa4", batch, hw_path).output_tokens_per_s  # fmt: skip
        assert x.predicted_ratio == pytest.approx(expected) and x.measured_ratio == pytest.approx(expected * factor)
        assert x.ratio_error_pct == pytest.approx(100 * (1 / factor - 1))
    assert c.pairs.max_abs_ratio_error_pct == pytest.approx(100.0)
    c = comparison_of([path], hw_path, baseline="small-base")
    assert c.pairs.missing_baseline == ["tiny-gqa4 b=1 in=32 out=8", "tiny-mha b=1 in=32 out=8"]
    assert [(x.config, x.batch_size) for x in c.pairs.ratios] == [("tiny-gqa4", 2), ("tiny-mha", 2)]
    code, _, err = run_cli(capsys, path, "--hardware", hw_path, "--baseline", "nope")
    assert code == 2 and err.count("\n") == 1 and "baseline 'nope'" in err


def test_held_out_split_read_from_the_calibration_file(tmp_path, hw_path, capsys):
    cal = tmp_path / "cal.toml"
    cal.write_text(CALIBRATION)
    rows = [scaled(c, b, hw_path, 0.9) for c in ("tiny-mha", "tiny-gqa4", "small-base") for b in (1, 2)]
    path = write_rows(tmp_path / "s.jsonl", rows)
    assert fit_holdout(cal, "local-cpu", "torch", load_sweeps([path])) == {"holdout_configs": ["tiny-gqa4"]}
    code, out, _ = run_cli(capsys, path, "--hardware", hw_path, "--calibration", cal, "--json")
    c = json.loads(out)
    assert code == 0 and c["calibrated"] and c["holdout_configs"] == ["tiny-gqa4"]
    assert {p["config"]: p["split"] for p in c["points"]} == {"tiny-mha": "train", "tiny-gqa4": "holdout",
                                                              "small-base": "train"}  # fmt: skip
    assert {(s["split"], s["n_points"]) for s in c["summary"] if s["metric"] == "ttft_s"} == {
        ("all", 6), ("train", 4), ("holdout", 2)}  # fmt: skip
    point = next(p for p in c["points"] if p["config"] == "tiny-gqa4" and p["batch_size"] == 2)
    with_file = predicted("tiny-gqa4", 2, hw_path, calibration_file=cal)  # the file's factors, not the priors
    assert point["predicted_output_tokens_per_s"] == pytest.approx(with_file.output_tokens_per_s)
    code, out, _ = run_cli(capsys, path, "--hardware", hw_path, "--calibration", cal)
    assert "Held out of the fit (configs): tiny-gqa4; trained on: small-base, tiny-mha" in out and "(calibrated)" in out


def test_held_out_batch_sizes_read_from_the_calibration_file(tmp_path, hw_path, capsys):
    cal = tmp_path / "cal.toml"
    split = 'train_configs = ["tiny-mha", "small-base"]\nholdout_configs = ["tiny-gqa4"]\n'
    cal.write_text(CALIBRATION.replace(split, "train_batch_sizes = [1, 4]\nholdout_batch_sizes = [2]\n"))
    rows = [scaled(c, b, hw_path, 0.9) for c in ("tiny-mha", "tiny-gqa4") for b in (1, 2, 4)]
    path = write_rows(tmp_path / "s.jsonl", rows)
    c = comparison_of([path], hw_path, cal, **fit_holdout(cal, "local-cpu", "torch", load_sweeps([path])))
    assert (c.holdout_configs, c.holdout_batch_sizes) == (None, [2])
    assert {(p.batch_size, p.split) for p in c.points} == {(1, "train"), (2, "holdout"), (4, "train")}
    code, out, _ = run_cli(capsys, path, "--hardware", hw_path, "--calibration", cal)
    assert code == 0 and "Held out of the fit (batch sizes): 2; trained on: 1, 4" in out
    cal.write_text(CALIBRATION.replace(split, ""))  # a calibration that records no split
    assert fit_holdout(cal, "local-cpu", "torch", load_sweeps([path])) == {}


def test_calibration_without_the_entry_is_one_line_exit_2(tmp_path, hw_path, capsys):
    cal = tmp_path / "cal.toml"
    cal.write_text(CALIBRATION.replace("[local-cpu.torch]", "[h100-sxm.torch]"))
    path = write_rows(tmp_path / "s.jsonl", [scaled("tiny-mha", 1, hw_path, 1.0)])
    code, out, err = run_cli(capsys, path, "--hardware", hw_path, "--calibration", cal)
    assert code == 2 and out == "" and err.count("\n") == 1 and "[local-cpu.torch]" in err


def test_mixed_machines_are_one_line_exit_2(tmp_path, hw_path, capsys):
    a = write_rows(tmp_path / "a.jsonl", [scaled("tiny-mha", 1, hw_path, 1.0)])
    b = write_rows(tmp_path / "b.jsonl", [scaled("tiny-mha", 2, hw_path, 1.0, cpu="Other CPU")])
    code, out, err = run_cli(capsys, a, b, "--hardware", hw_path)
    assert code == 2 and out == "" and err.count("\n") == 1 and "mix machines" in err


def test_unknown_gpu_and_missing_file_are_one_line_exit_2(tmp_path, hw_path, capsys):
    path = write_rows(tmp_path / "s.jsonl", [scaled("tiny-mha", 1, hw_path, 1.0)])
    for argv in ([path, "--gpu", "h9000"], [tmp_path / "missing.jsonl", "--hardware", hw_path]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("archscale: error:")


def test_oom_and_infeasible_points_are_excluded_with_a_note(tmp_path, hw_path, capsys):
    rows = [scaled("tiny-mha", 1, hw_path, 1.0), row("tiny-mha", 64, 0, 0, 0, status="oom"),
            row("llama-3.2-1b", 1, 10.0, 0.5, 0.1), scaled("tiny-mha", 2, hw_path, 1.0, hardware="other-gpu"),
            scaled("tiny-mha", 1, hw_path, 3.0),  # the same point measured again: merged (median)
            {**scaled("tiny-mha", 1, hw_path, 5.0), "shape_hash": "9876543210"}]  # fmt: skip  # same name, other shape
    path = write_rows(tmp_path / "s.jsonl", rows)
    code, out, _ = run_cli(capsys, path, "--hardware", hw_path)
    assert code == 0 and "Excluded (3):" in out
    assert "tiny-mha b=1 in=32 out=8: a second row for this point (shape_hash 9876543210" in out
    assert "tiny-mha b=64 in=32 out=8: status oom (CUDA out of memory)" in out
    assert "llama-3.2-1b b=1 in=32 out=8: the model finds it infeasible on local-cpu" in out
    assert "warning: the rows were predicted for hardware other-gpu" in out
    c = comparison_of([path], hw_path)
    assert [(p.config, p.batch_size, p.measurements) for p in c.points] == [("tiny-mha", 1, 2), ("tiny-mha", 2, 1)]
    assert c.points[0].output_tokens_per_s_error_pct == pytest.approx(100 * (1 / 2 - 1))  # measured at 2x: median


def test_corrupt_middle_line_is_exit_2_and_the_file_unchanged(tmp_path, hw_path, capsys):
    path = write_rows(tmp_path / "s.jsonl", [scaled("tiny-mha", b, hw_path, 1.0) for b in (1, 2, 4)])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + '{"config": "tiny-mha", "batch\n' + lines[2])
    before = path.read_bytes()
    code, out, err = run_cli(capsys, path, "--hardware", hw_path)
    assert code == 2 and out == "" and err.count("\n") == 1 and ":2: corrupt results line" in err
    assert path.read_bytes() == before


def test_json_is_strict_and_plot_writes_three_pngs(tmp_path, hw_path, capsys):
    rows = [scaled(c, b, hw_path, f) for c, f in (("tiny-mha", 0.7), ("tiny-gqa4", 1.1)) for b in (1, 2, 4)]
    rows.append(scaled("tiny-mha", 8, hw_path, 1.0, output_len=1))  # TPOT None
    path = write_rows(tmp_path / "s.jsonl", rows)
    plots = tmp_path / "plots"
    code, out, err = run_cli(capsys, path, "--hardware", hw_path, "--json", "--plot", plots)

    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    c = json.loads(out, parse_constant=no_constants)
    assert code == 0 and c["engine"] == "torch" and c["ranking"]["n_groups"] == 3 and "Wrote" in err
    assert c["points"][-1]["tpot_s_error_pct"] is None and c["ranking"]["mean_spearman"] is None  # 2 configs only
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == sorted(["compare-predicted-vs-measured.png", "compare-throughput-vs-batch.png",
                           "compare-ratio-vs-batch.png"])  # fmt: skip  # no temporary file left
    assert all((plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)


def test_text_report_names_machine_hardware_calibration_and_sections(tmp_path, hw_path, capsys):
    rows = [scaled(c, b, hw_path, 0.8) for c in ("tiny-mha", "tiny-gqa4", "small-base") for b in (1, 2)]
    code, out, _ = run_cli(capsys, write_rows(tmp_path / "s.jsonl", rows), "--hardware", hw_path)
    assert code == 0
    for needle in ("Measured on: Toy CPU (2 CPUs), engine torch; 6 points", "hardware entry local-cpu (Toy CPU",
                   "uncalibrated priors (hardware entry local-cpu)", "Held out: no split",
                   "out tok/s    all       6         25.0%      25.0%      +25.0%",
                   "order fully right: 2 of 2 (100%)", "mean Spearman: 1.000",
                   "Throughput ratio to the baseline small-base", "median |ratio error| 0.0%", "Per point"):  # fmt: skip
        assert needle in out, needle


def test_a_point_measured_in_two_passes_is_their_median_with_its_spread(tmp_path, hw_path, capsys):
    """Two passes (files) measure the same point at different times: compare uses the median and reports how far
    apart the measurements landed."""
    first = write_rows(tmp_path / "s.jsonl", [row("tiny-mha", 1, 1000.0, 0.002, 0.0005),
                                              row("tiny-gqa4", 1, 1500.0, 0.002, 0.0005)])  # fmt: skip
    second = write_rows(tmp_path / "s-pass2.jsonl", [row("tiny-mha", 1, 1200.0, 0.004, 0.0007)])
    c = comparison_of([first, second], hw_path)
    mha, gqa = sorted(c.points, key=lambda p: p.config != "tiny-mha")
    assert (mha.measurements, mha.measured_range, mha.measured_output_tokens_per_s) == (2, [1000.0, 1200.0], 1100.0)
    assert mha.measured_ttft_s == pytest.approx(0.003) and mha.measured_tpot_s == pytest.approx(0.0006)
    assert mha.measured_spread_pct == pytest.approx(100 * 200 / 1100)
    assert (gqa.measurements, gqa.measured_range, gqa.measured_spread_pct) == (1, None, None)
    assert c.n_repeated_points == 1 and c.max_measured_spread_pct == pytest.approx(100 * 200 / 1100)
    assert not c.excluded  # merged, not set aside as a duplicate
    code, out, _ = run_cli(capsys, first, second, "--hardware", hw_path)
    assert code == 0 and "Measured more than once: 1 points (medians used)" in out and "spread" in out


def test_ranking_counts_apart_only_pairs_whose_measurements_do_not_overlap(tmp_path, hw_path):
    """Three configs measured twice at batch 1. Two are measured in the opposite order to the model's but their
    measurements overlap (a tie within the spread between passes); the third is measured clear of both and in the
    model's order."""
    configs = ["small-base", "tiny-gqa4", "tiny-mha"]
    speed = {c: predicted(c, 1, hw_path).output_tokens_per_s for c in configs}
    fast, mid, slow = sorted(configs, key=speed.get, reverse=True)
    base = speed[mid]
    passes = {fast: (0.98 * base, 1.00 * base), mid: (0.99 * base, 1.04 * base), slow: (0.50 * base, 0.52 * base)}
    one = write_rows(tmp_path / "s.jsonl", [row(c, 1, passes[c][0], 0.01, 0.001) for c in configs])
    two = write_rows(tmp_path / "s-pass2.jsonl", [row(c, 1, passes[c][1], 0.01, 0.001) for c in configs])
    r = comparison_of([one, two], hw_path).ranking
    assert (r.n_pairs, r.n_pairs_right) == (3, 2)  # fast and mid swapped in the medians
    assert (r.n_pairs_apart, r.n_pairs_apart_right, r.n_groups_apart, r.n_groups_right_apart) == (2, 2, 1, 1)
    # a second workload where no pair is measured apart counts in neither
    more = [row(c, 4, 100.0 + k, 0.01, 0.001) for k in (0, 1) for c in configs]  # every config at 100-101
    write_rows(tmp_path / "s-pass3.jsonl", more)
    r = comparison_of([one, two, tmp_path / "s-pass3.jsonl"], hw_path).ranking
    assert (r.n_groups, r.n_groups_apart, r.n_groups_right_apart) == (2, 1, 1)
    single = comparison_of([one], hw_path).ranking
    assert single.n_pairs_apart is None  # one measurement per point: the spread is unknown, nothing claimed


def test_ranking_holds_each_pass_against_the_others_as_the_ceiling_noise_sets(tmp_path, hw_path, capsys):
    """Three configs measured in three passes at batch 1 (hand-checked below); a pass that misses a config leaves
    its workload out of the self-agreement rather than pairing values from different passes."""
    a, b, c = "small-base", "tiny-gqa4", "tiny-mha"
    passes = [{a: 100.0, b: 90.0, c: 80.0}, {a: 95.0, b: 97.0, c: 81.0}, {a: 101.0, b: 92.0, c: 85.0}]
    files = [write_rows(tmp_path / f"s-pass{k}.jsonl", [row(config, 1, rate, 0.01, 0.001) for config, rate in
                                                        measured.items()]) for k, measured in enumerate(passes)]  # fmt: skip
    r = comparison_of(files, hw_path).ranking
    # Pass 0 against the median of passes 1, 2 (a 98, b 94.5, c 83): a > b > c both — 3 of 3.
    # Pass 1 (b > a > c) against passes 0, 2 (a 100.5, b 91, c 82.5): a-b wrong, a-c and b-c right — 2 of 3.
    # Pass 2 against passes 0, 1 (a 97.5, b 93.5, c 80.5): 3 of 3. So pairs 8 of 9, whole order 2 of 3.
    assert (r.n_self_pairs, r.n_self_pairs_right, r.n_self_orders, r.n_self_orders_right) == (9, 8, 3, 2)
    code, out, _ = run_cli(capsys, *map(str, files), "--hardware", hw_path)
    assert code == 0 and "pairs right 8 of 9 (89%), whole order right 2 of 3 (67%)" in out
    ragged = write_rows(tmp_path / "ragged.jsonl", [row(a, 1, 99.0, 0.01, 0.001)])  # a fourth value for a only
    assert comparison_of([*files, ragged], hw_path).ranking.n_self_pairs is None
    assert comparison_of(files[:1], hw_path).ranking.n_self_pairs is None  # measured once: nothing to hold against
