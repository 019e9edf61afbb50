"""`archscale bench-kernel`: the grid, resume, the no-GPU error, the plot, and (on a GPU) one real point."""

import json

import pytest
import torch

from harness.cli.main import main
from harness.report.kernel_plot import plot_kernel_bench
from harness.sweep.results_io import append_jsonl, read_jsonl
from kernels.bench import KEY_FIELDS, KernelPoint, grid


def test_default_grid_is_the_issue_grid():
    points = grid()
    assert len(points) == 5 * 4 * 3 * 2
    assert {p.batch_size for p in points} == {1, 8, 32, 128, 256}
    assert {p.kv_len for p in points} == {512, 2048, 8192, 32768}
    assert {p.group for p in points} == {1, 4, 8} and {p.head_dim for p in points} == {64, 128}
    assert all(p.dtype == "bfloat16" for p in points)


def test_bytes_moved_counts_kv_once_per_kv_head():
    p = KernelPoint(batch_size=2, kv_len=1000, group=8, head_dim=128, num_kv_heads=8)
    assert p.bytes_moved == 2 * (2 * 8 * 1000 * 128) * 2 + 2 * (2 * 64 * 128) * 2  # K+V, then q and out; bf16


def test_dry_run_lists_points_and_skips_finished_ones(capsys, tmp_path):
    out = tmp_path / "bench.jsonl"
    finished = KernelPoint(batch_size=8, kv_len=512, group=4, head_dim=64)
    append_jsonl(out, {**finished.to_dict(), "status": "ok"})
    argv = ["bench-kernel", "--dry-run", "--out", str(out), "--batch-sizes", "1,8", "--kv-lens", "512",
            "--groups", "4", "--head-dims", "64"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 points, 1 already in" in text and "batch    1" in text and "batch    8" not in text
    assert tuple(finished.to_dict()[f] for f in KEY_FIELDS) == finished.key()


def test_corrupt_results_file_is_one_line_exit_2_and_untouched(capsys, tmp_path):
    out = tmp_path / "bench.jsonl"
    out.write_text('{"kernel": "gqa_decode"}\n{broken\n')
    assert main(["bench-kernel", "--dry-run", "--out", str(out)]) == 2
    assert "bench.jsonl:2: corrupt" in capsys.readouterr().err
    assert out.read_text() == '{"kernel": "gqa_decode"}\n{broken\n'


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_without_a_gpu_it_says_so(capsys, tmp_path):
    assert main(["bench-kernel", "--out", str(tmp_path / "b.jsonl")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "b.jsonl").exists()


def test_plot_draws_every_implementation(tmp_path):
    rows = []
    for kv_len in (512, 2048):
        row = {**KernelPoint(8, kv_len, 4, 128).to_dict(), "status": "ok", "copy_bandwidth_bytes_per_s": 3e12}
        for impl, gbps in (("triton", 2.5e12), ("sdpa", 1.5e12), ("flex", 2.0e12)):
            row[f"{impl}_bytes_per_s"] = gbps * kv_len / 2048
        rows.append(row)
    rows.append({**KernelPoint(256, 32768, 8, 128).to_dict(), "status": "oom"})
    path = plot_kernel_bench(rows, tmp_path / "k.png", title="plot test")
    assert path.stat().st_size > 10_000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_real_point_on_gpu(capsys, tmp_path):
    out = tmp_path / "bench.jsonl"
    argv = ["bench-kernel", "--out", str(out), "--batch-sizes", "8", "--kv-lens", "2048", "--groups", "4",
            "--head-dims", "128", "--no-flex"]  # fmt: skip
    assert main(argv) == 0
    (row,) = read_jsonl(out)
    assert row["status"] == "ok" and row["triton_time_s"] > 0 and row["max_abs_diff_vs_sdpa"] < 2e-2
    assert row["metadata"]["gpu_name"] and row["metadata"]["git_sha"]
    json.dumps(row)
    assert main(argv) == 0  # resume: nothing new
    assert len(read_jsonl(out)) == 1
