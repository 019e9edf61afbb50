"""vLLM/SGLang sweep rows through calibrate and compare (fake engines, tests/harness/fake_engines.py): rows without a
wave's prefill time or TPOT are fitted on output tokens/s and mean TTFT, predicted with the limits the engine
reported in effect, and compared on what they measured."""

import json
import tomllib

from fake_engines import sweep

from harness.cli.main import main
from harness.sweep.results_io import read_jsonl
from harness.sweep.rows import engine_limits, load_sweeps


def test_a_vllm_sweep_is_calibrated_and_compared_on_what_it_measured(tmp_path, fake_engines, capsys):
    out = tmp_path / "vllm.jsonl"
    assert sweep("vllm", out, "--engine-arg", "max_num_seqs=2") == 0
    rows = read_jsonl(out)
    assert all(r["status"] == "ok" and r["prefill_time_s"] is None and r["ttft_s"] > 0 for r in rows)
    assert {engine_limits(r)["max_num_seqs"] for r in load_sweeps([out]).rows} == {2}  # as the engine reported it
    capsys.readouterr()
    cal = tmp_path / "cal.toml"
    code = main(["calibrate", str(out), "--gpu", "h100-sxm", "--factors", "step_overhead_s", "--out", str(cal)])
    report = capsys.readouterr().out
    assert code == 0 and "residuals (throughput, ttft;" in report and "Held out configs: tiny-mha" in report
    table = tomllib.loads(cal.read_text())["h100-sxm"]["vllm"]
    assert table["fitted"] == ["step_overhead_s"] and table["holdout_configs"] == ["tiny-mha"]
    assert table["n_points"] == 2 and table["calibrated"] is True
    assert main(["compare", str(out), "--gpu", "h100-sxm", "--calibration", str(cal), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    points = comparison["points"]
    assert {p["split"] for p in points} == {"train", "holdout"} and len(points) == 4
    assert all(p["ttft_s_error_pct"] is not None and p["tpot_s_error_pct"] is None for p in points)
    assert all(p["predicted_concurrency"] <= 2 for p in points)  # the engine's cap, read back from the rows
