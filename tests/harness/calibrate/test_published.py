"""Published vLLM/SGLang throughputs (harness/calibrate/published.py, `archscale published`): predicted row by row with the
engines' priors and with the package's fit, written as sweep rows that calibrate and compare read, and a fit adopted
as the package default only where it beats the priors on the rows it held out."""

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.calibrate.published import (
    MODEL_PRESETS,
    adopt_fits,
    markdown_table,
    predict_published,
    read_rows,
    sweep_row_groups,
    write_sweep_rows,
)
from harness.cli.main import main
from harness.sweep.rows import load_sweeps
from perfmodel import PRESETS, get_gpu, predict
from perfmodel.calibration import (
    CALIBRATION_FIELDS,
    FITTED_FIELDS,
    PUBLISHED_CALIBRATION,
    engine_priors,
    get_calibration,
    load_calibration_file,
)

ROOT = Path(__file__).resolve().parents[3]
FITS = ROOT / "results" / "published" / "calibration.toml"  # what `make calibrate-published` fitted


def _predict_default(row: dict):
    """What `archscale predict --engine-version <the row's>` says for the row."""
    return predict(PRESETS[MODEL_PRESETS[row["model"]]], get_gpu(row["gpu"]), engine=row["engine"],
                   batch_size=int(row["num_prompts"]), input_len=int(row["input_len"]),
                   output_len=int(row["output_len"]), engine_version=row.get("engine_version"))  # fmt: skip


def test_every_published_row_is_predicted_with_the_priors_and_where_adopted_the_fit():
    rows = read_rows()
    points = predict_published(rows)
    assert len(points) == len(rows)
    shipped = load_calibration_file(PUBLISHED_CALIBRATION)
    for row, point in zip(rows, points, strict=True):
        assert math.isfinite(point.predicted_output_tokens_per_s) and point.predicted_output_tokens_per_s > 0
        assert point.error_pct == pytest.approx(
            100 * (point.predicted_output_tokens_per_s / float(row["output_tokens_per_s"]) - 1)
        )
        default = _predict_default(row)  # what `archscale predict` says for the row: the fit where adopted
        if row["engine"] in shipped.get(row["gpu"], {}):
            assert default.calibrated and point.fit_split in ("train", "holdout")
            assert point.fitted_output_tokens_per_s == pytest.approx(default.output_tokens_per_s, rel=1e-12)
        else:
            assert not default.calibrated and point.fitted_output_tokens_per_s is None and point.fit_split is None
            assert point.predicted_output_tokens_per_s == pytest.approx(default.output_tokens_per_s, rel=1e-12)


def test_the_table_summarizes_each_gpu_and_engine_and_names_every_source():
    points = predict_published(read_rows())
    table = markdown_table(points)
    assert all(p.source_url in table for p in points)
    for engine, gpu in {(p.engine, p.gpu) for p in points}:
        assert f"| {engine} | {gpu} | " in table
    assert "(train)" in table and "(holdout)" in table  # the adopted fit marks its rows


def test_rows_become_sweep_rows_that_calibrate_and_compare_read(tmp_path):
    paths = write_sweep_rows(tmp_path)
    groups = sweep_row_groups()
    assert sorted(p.name for p in paths) == sorted(f"published-{e}-{g}.jsonl" for e, g in groups)
    rows = read_rows()
    for path in paths:
        data = load_sweeps([path])  # throughput-only rows are measured rows
        engine, gpu = path.stem.removeprefix("published-").split("-", 1)
        assert data.engine == engine and data.machine == get_gpu(gpu).display_name and not data.excluded
        for row in data.rows:  # a point published several times (trials of one version) is their median
            source = rows[row["metadata"]["published_csv_line"] - 2]
            same = [float(r["output_tokens_per_s"]) for r in rows
                    if all(r[k] == source[k] for k in ("engine", "engine_version", "gpu", "model", "input_len",
                                                       "output_len", "num_prompts", "attention_backend"))]  # fmt: skip
            assert row["measurements"] == len(same) and row["output_tokens_per_s"] == pytest.approx(np.median(same))
            assert (row["batch_size"], row["input_len"], row["output_len"]) == (
                int(source["num_prompts"]), int(source["input_len"]), int(source["output_len"]))  # fmt: skip
            assert row["prefill_time_s"] is None and row["tpot_s"] is None
    again = tmp_path / "again"
    write_sweep_rows(again)  # a pure function of the CSV: the fit's recorded SHA-256 names the data
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in paths)


def test_the_shipped_fit_is_what_adopt_makes_of_the_recorded_fits(tmp_path):
    """perfmodel/data/published_calibration.toml is regenerated, never edited: adopting results/published's fits
    again gives the same tables."""
    out = tmp_path / "adopted.toml"
    decisions = adopt_fits(FITS, out)
    assert tomllib.loads(out.read_text()) == tomllib.loads(PUBLISHED_CALIBRATION.read_text())
    assert len(decisions) == sum(len(engines) for engines in tomllib.loads(FITS.read_text()).values())
    for line in decisions:
        assert (": adopted (" in line) != (": not adopted (" in line)


def test_a_fit_that_predicts_its_held_out_rows_worse_is_not_adopted(tmp_path):
    raw = tomllib.loads(FITS.read_text())
    table = raw["a100-80gb"]["vllm"]
    assert table["holdout_configs"]  # the A100 fit holds out whole models
    from harness.toml_io import dumps

    worse = tmp_path / "worse.toml"
    worse.write_text(dumps({"a100-80gb": {"vllm": {**table, "memory_efficiency": 0.2}}}))
    out = tmp_path / "out.toml"
    (decision,) = adopt_fits(worse, out)
    assert decision.startswith("[a100-80gb.vllm]: not adopted") and tomllib.loads(out.read_text()) == {}
    no_holdout = tmp_path / "all.toml"
    no_holdout.write_text(dumps({"a100-80gb": {"vllm": {**table, "holdout_configs": [],
                                                        "train_configs": sorted(MODEL_PRESETS.values())}}}))  # fmt: skip
    (decision,) = adopt_fits(no_holdout, out)
    assert "no published row held out" in decision
    no_split = tmp_path / "nosplit.toml"
    no_split.write_text(dumps({"a100-80gb": {"vllm": {k: v for k, v in table.items()
                                                      if k not in ("train_configs", "holdout_configs")}}}))  # fmt: skip
    (decision,) = adopt_fits(no_split, out)
    assert "records no train/held-out split" in decision


def test_get_calibration_uses_an_adopted_fit_and_engine_priors_do_not():
    shipped = tomllib.loads(PUBLISHED_CALIBRATION.read_text())
    gpu, engines = next(iter(shipped.items()))
    engine = next(iter(engines))
    hardware = get_gpu(gpu)
    adopted, priors = get_calibration(hardware, engine), engine_priors(hardware, engine)
    assert adopted.calibrated and not priors.calibrated
    # the fit's factors, the engine's current policy (limits, memory budget): a shipped fit freezes no engine default
    fit = load_calibration_file(PUBLISHED_CALIBRATION)[gpu][engine]
    for name in CALIBRATION_FIELDS:
        expected = getattr(fit, name) if name in FITTED_FIELDS else getattr(priors, name)
        assert getattr(adopted, name) == expected or name == "calibrated", name
    row = {"model": "Qwen/Qwen2.5-1.5B-Instruct", "gpu": gpu, "engine": engine, "num_prompts": 1, "input_len": 1,
           "output_len": 2048}  # fmt: skip
    assert "published_calibration.toml" in _predict_default(row).calibration_source


def test_compare_reads_throughput_only_rows_and_the_fits_split(tmp_path, capsys):
    (path,) = [p for p in write_sweep_rows(tmp_path) if p.name == "published-vllm-a100-80gb.jsonl"]
    assert main(["compare", str(path), "--gpu", "a100-80gb", "--calibration", str(FITS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    held = {p["config"] for p in report["points"] if p["split"] == "holdout"}
    assert held == set(report["holdout_configs"]) and held
    assert all(p["measured_tpot_s"] is None and p["measured_prefill_time_s"] is None for p in report["points"])
    counts = {(s["metric"], s["split"]): s["n_points"] for s in report["summary"]}
    assert counts["output_tokens_per_s", "holdout"] == 8 and counts["tpot_s", "all"] == counts["ttft_s", "all"] == 0
    # without --calibration: the engine's priors, not the fit the package adopted for the A100
    assert main(["compare", str(path), "--gpu", "a100-80gb", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibrated"] is False and {p["split"] for p in report["points"]} == {"uncalibrated"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adopt", "fits.toml"], "--adopt FILE.toml and --out FILE.toml go together"),
        (["--adopt", "missing.toml", "--out", "x.toml"], "missing.toml does not exist"),
        (["--sweep-rows", "a-file"], "--sweep-rows"),
        (["--adopt", "fits.toml", "--out", "x.toml", "--json"], "--adopt does one job"),
        (["--sweep-rows", "out", "--json"], "--sweep-rows writes files"),
    ],
)
def test_bad_published_arguments_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("not a folder")
    assert main(["published", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not Path("x.toml").exists() and Path("a-file").read_text() == "not a folder"


def test_the_adopted_fit_holds_the_readme_figures_on_its_held_out_rows():
    """README, "Published vLLM and SGLang throughputs": vLLM on A100-80GB, held out 9.4% median / 15.1% max |error|
    (+0.5 points for rounding). A model change that moves these must re-run `make calibrate-published`."""
    import numpy as np

    held = [p for p in predict_published(read_rows()) if (p.engine, p.gpu, p.fit_split) == ("vllm", "a100-80gb",
                                                                                             "holdout")]  # fmt: skip
    errors = np.abs([p.fitted_error_pct for p in held])
    assert len(held) == 8 and np.median(errors) <= 9.4 + 0.5 and errors.max() <= 15.1 + 0.5


def test_a_tensor_parallel_row_is_predicted_on_its_gpus_and_not_made_a_sweep_row(tmp_path):
    one = next(r for r in read_rows() if r["gpu"] == "h100-sxm")
    two = {**one, "tp": "2"}
    single, split = predict_published([one, two])
    assert split.predicted_output_tokens_per_s > single.predicted_output_tokens_per_s  # two GPUs, one request stream
    assert split.fitted_output_tokens_per_s is None and split.fit_split is None  # fits are of single-GPU rows
    import csv

    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(one))
        writer.writeheader()
        writer.writerows([one, two])
    assert [len(rows) for rows in sweep_row_groups(path).values()] == [1]
