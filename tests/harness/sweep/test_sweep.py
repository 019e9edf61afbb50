"""`archscale sweep` as a user runs it: one row per point with the measurement and its prediction, resume that
skips finished points, a SIGKILL mid-way that loses nothing, a corrupt file left untouched, failing points as rows."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.cli.main import main
from harness.sweep.points import KEY_FIELDS, build_points, run_sweep
from harness.sweep.results_io import read_jsonl
from perfmodel import PRESETS

SMALL_GRID = ["tiny-mha", "tiny-gqa4", "--batch-size", "1,3", "--input-len", "16", "--output-len", "4", "--quiet"]
ROW_KEYS = set(KEY_FIELDS) | {"status", "output_tokens_per_s", "total_tokens_per_s", "ttft_s", "tpot_s",
                              "peak_memory_bytes", "runs", "predicted", "arch", "options", "metadata"}  # fmt: skip


def keys_of(path):
    return [tuple(row[f] for f in KEY_FIELDS) for row in read_jsonl(path)]


def test_tiny_sweep_writes_one_row_per_point_and_resume_skips_them(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 4 and len(set(keys_of(out))) == 4
    for row in rows:
        assert ROW_KEYS <= set(row) and row["status"] == "ok"
        assert row["output_tokens_per_s"] > 0 and row["device"] == "cpu" and row["dtype"] == "float32"
        assert row["metadata"]["git_sha"] and row["metadata"]["command"]
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 0
    assert "0 to measure" in capsys.readouterr().out and out.read_bytes() == before
    # widening the grid measures only the new points
    assert main(["sweep", *SMALL_GRID, "--batch-size", "1,2,3", "--out", str(out)]) == 0
    assert len(read_jsonl(out)) == 6 and len(set(keys_of(out))) == 6


def test_dry_run_measures_nothing(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", *SMALL_GRID, "--out", str(out), "--dry-run"]) == 0
    assert not out.exists() and "4 to measure" in capsys.readouterr().out
    out.write_text('{"config": "tiny-mha", "sha')  # a torn line: a dry run reports it and changes nothing
    assert main(["sweep", *SMALL_GRID, "--out", str(out), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "a real run sets it aside" in captured.err and "4 to measure" in captured.out
    assert out.read_text() == '{"config": "tiny-mha", "sha' and not (tmp_path / "sweep.jsonl.torn").exists()


def test_corrupt_middle_line_is_exit_2_and_the_file_is_byte_identical(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 0
    lines = out.read_bytes().split(b"\n")
    lines[1] = lines[1][:40]  # a damaged row that is not the last
    out.write_bytes(b"\n".join(lines))
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sweep.jsonl:2: corrupt" in err
    assert out.read_bytes() == before


def test_torn_last_line_is_set_aside_and_its_point_measured_again(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 0
    data = out.read_bytes()
    torn = data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 50]  # the last row cut after 50 bytes, no newline
    out.write_bytes(torn)
    capsys.readouterr()
    assert main(["sweep", *SMALL_GRID, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "set aside" in captured.err and "1 to measure" in captured.out
    assert sorted(keys_of(out)) == sorted(set(keys_of(out))) and len(keys_of(out)) == 4
    assert (tmp_path / "sweep.jsonl.torn").read_bytes() == torn[torn.rstrip(b"\n").rfind(b"\n") + 1 :] + b"\n"


def test_sweep_killed_mid_way_resumes_with_every_key_exactly_once(tmp_path):
    out = tmp_path / "sweep.jsonl"
    argv = [sys.executable, "-m", "harness", "sweep", "tiny-mha", "tiny-gqa4", "--batch-size", "1,2,3,4,5,6",
            "--input-len", "16,24", "--output-len", "4", "--quiet", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_bytes().count(b"\n") >= 2) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    measured_before = len(out.read_bytes().split(b"\n")) - 1
    assert 2 <= measured_before < 24, "the kill must land mid-way for this test to mean anything"
    subprocess.run(argv, check=True, capture_output=True)
    keys = keys_of(out)
    assert len(keys) == 24 and len(set(keys)) == 24
    assert all(line.strip() for line in out.read_text().split("\n")[:-1])  # no blank or partial line left


def test_a_failing_point_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import harness.engines.torch_engine as torch_engine
    from harness.engines.base import EngineOptions

    real_serve = torch_engine._serve

    def flaky_serve(arch, workload, options):
        if workload.batch_size == 2:
            raise RuntimeError("kernel exploded\nwith a second line")
        return real_serve(arch, workload, options)

    monkeypatch.setattr(torch_engine, "_serve", flaky_serve)
    points = build_points([PRESETS["tiny-mha"]], batch_sizes=(1, 2, 3), input_lens=(8,), output_lens=(3,),
                          engine="torch", options=EngineOptions(workspace_bytes=2**26), hardware=None)  # fmt: skip
    rows = run_sweep(points, tmp_path / "s.jsonl", {"test": True}, progress=False)
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["message"] == "RuntimeError: kernel exploded"
    assert rows[0]["prediction_unavailable"] and rows[0]["predicted"] is None
    assert len(read_jsonl(tmp_path / "s.jsonl")) == 3


def test_interleaved_order_measures_every_config_of_a_workload_back_to_back(tmp_path):
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", *SMALL_GRID, "--order", "interleaved", "--out", str(out)]) == 0
    measured = [(row["batch_size"], row["config"]) for row in read_jsonl(out)]
    assert measured == [(1, "tiny-mha"), (1, "tiny-gqa4"), (3, "tiny-mha"), (3, "tiny-gqa4")]
    by_config = build_points([PRESETS["tiny-mha"], PRESETS["tiny-gqa4"]], batch_sizes=(1, 3), input_lens=(16,),
                             output_lens=(4,), engine="torch", options=None, hardware=None)  # fmt: skip
    assert [(p.workload.batch_size, p.arch.name) for p in by_config] == [
        (1, "tiny-mha"),
        (3, "tiny-mha"),
        (1, "tiny-gqa4"),
        (3, "tiny-gqa4"),
    ]


def test_rows_carry_the_machine_reference_timed_around_the_point(tmp_path):
    from harness.sweep.machine_reference import measure_reference

    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", "tiny-mha", "--batch-size", "2", "--input-len", "8", "--output-len", "2", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_jsonl(out)
    now = measure_reference("cpu")
    for field, seconds in (("reference_gemm_s", now.gemm_s), ("reference_stream_s", now.stream_s)):
        assert 0 < row[field] < 1.0  # milliseconds of a fixed kernel, not the point's seconds
        assert row[field] / seconds < 20 and seconds / row[field] < 20  # the same kernel on the same machine


def exit_code(argv) -> int:
    """main()'s return code, or argparse's exit code for a usage error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tiny-mha", "--engine", "vllm"], "archscale[vllm]"),
        (["tiny-mha", "--batch-size", "1,0"], "positive integer"),
        (["no-such-model"], "neither a preset"),
        (["tiny-mha", "--passes", "0"], "positive integer"),
        pytest.param(
            ["tiny-mha", "--device", "cuda"],
            "no CUDA GPU",
            marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)
def test_bad_sweep_arguments_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr("harness.engines.external.REPO_ROOT", tmp_path)  # no .venv-vllm: vLLM is missing here
    grid = ["--batch-size", "1", "--input-len", "8", "--output-len", "2", "--out", str(tmp_path / "s.jsonl")]
    assert exit_code(["sweep", *grid[:-2], *argv, grid[-2], grid[-1]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "s.jsonl").exists()


def test_an_output_that_cannot_be_written_is_one_line_before_anything_is_measured(tmp_path, capsys):
    grid = ["sweep", "tiny-mha", "--batch-size", "1", "--input-len", "8", "--output-len", "2", "--quiet"]
    assert main([*grid, "--out", str(tmp_path)]) == 2  # a directory
    assert "is a directory" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*grid, "--out", str(blocker / "sub" / "s.jsonl")]) == 2  # its folder cannot be created
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create the folder" in err


def test_row_json_is_strict(tmp_path):
    """Rows are strict JSON (no NaN), so any JSON reader can load the file."""
    out = tmp_path / "sweep.jsonl"
    assert main(["sweep", "tiny-mha", "--batch-size", "1", "--input-len", "8", "--output-len", "2", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_passes_measure_the_grid_again_into_files_of_their_own_and_resume(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    second = tmp_path / "sweep-pass2.jsonl"
    assert main(["sweep", *SMALL_GRID, "--out", str(out), "--passes", "2", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"Pass 2 of 2: {second}" in printed and printed.count("4 to measure") == 2 and not out.exists()
    second.write_text("")  # a pass that had started: it resumes after the first
    assert main(["sweep", *SMALL_GRID, "--out", str(out), "--passes", "2"]) == 0
    assert keys_of(out) == keys_of(second) and len(keys_of(out)) == 4
    first_done = max(row["point_finished_utc"] for row in read_jsonl(out))
    assert min(row["point_finished_utc"] for row in read_jsonl(second)) >= first_done  # pass 2 after pass 1
    capsys.readouterr()
    assert main(["sweep", *SMALL_GRID, "--out", str(out), "--passes", "2"]) == 0
    assert capsys.readouterr().out.count("0 to measure") == 2
    from harness.sweep.rows import load_sweeps

    data = load_sweeps([out, second])  # calibrate and compare see each point once, at its median of two
    assert len(data.rows) == 4 and {row["measurements"] for row in data.rows} == {2}


def test_a_vllm_points_prediction_follows_the_release_that_serves_it():
    """The sweep knows the engine's release before the first point (it asks the engine's Python): the prediction
    stored next to each measurement uses that release's scheduling policy, and a release older than the table is
    the row's reason for having no prediction, not a crash."""
    from harness.engines.base import EngineOptions
    from harness.sweep.points import predict_point
    from perfmodel import get_gpu

    def point(version):
        (only,) = build_points([PRESETS["llama-3.2-1b"]], batch_sizes=(512,), input_lens=(512,), output_lens=(128,),
                               engine="vllm", options=EngineOptions(device="cuda", dtype="bfloat16"),
                               hardware=get_gpu("h100-sxm"), engine_version=version)  # fmt: skip
        return predict_point(only)

    old, why = point("0.6.3")
    assert why is None and old["engine_version"] == "0.6.3" and old["engine_policy"]["chunked_prefill"] is False
    newest, _ = point(None)
    assert newest["engine_policy"]["max_num_seqs"] == 1024 and old["engine_policy"]["max_num_seqs"] == 256
    missing, why = point("0.4.1")
    assert missing is None and "older than the releases" in why
