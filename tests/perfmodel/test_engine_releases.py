"""Engine policy by release (perfmodel/engine_releases.py, data/engine_releases.toml): release numbers read from
version text, the defaults of releases read from their code, the table's own checks, and every way a release
reaches a prediction (get_calibration, `predict --engine-version`, a sweep row's engine_version)."""

import json

import numpy as np
import pytest

from harness.calibrate.published import sweep_row_groups
from harness.cli.main import main
from harness.sweep.rows import predict_rows
from perfmodel import engine_releases, get_calibration, get_gpu
from perfmodel.calibration import FITTED_FIELDS
from perfmodel.engine_releases import parse_release, release_policy, release_table
from perfmodel.errors import ArchscaleInputError


@pytest.mark.parametrize(
    "text, release",
    [
        ("0.6.3", (0, 6, 3)),
        ("0.11", (0, 11, 0)),
        ("v0.5.3.post1", (0, 5, 3)),
        ("0.11.1.dev42+g1234abc", (0, 11, 1)),
        ("main@2024-08-04 (unreleased; after v0.5.3.post1 2024-07-23, before v0.5.4 2024-08-05)", (0, 5, 3)),
        ("main@~2025-09-22 (between v0.5.2 2025-09-11 and v0.5.3 2025-10-06)", (0, 5, 2)),
        ("latest", None),
        ("2024-08-04", None),
        (None, None),
    ],
)
def test_a_release_is_the_first_release_number_in_the_text(text, release):
    assert parse_release(text) == release


@pytest.mark.parametrize(
    "engine, release, gpu, expected",
    [
        # V0 (vllm/envs.py VLLM_USE_V1 default "0" through 0.7.x): no chunked prefill, 256 sequences, graphs to 256
        ("vllm", "0.6.3", "a100-80gb", {"chunked_prefill": False, "max_num_seqs": 256, "cuda_graph_max_batch": 256}),
        ("vllm", "0.5.3", "h100-sxm", {"chunked_prefill": False, "max_prefill_tokens": 8192}),
        # V1 0.8.0-0.8.3: 16384 tokens where the device name has h100/h200, 1024 sequences everywhere
        ("vllm", "0.8.2", "h100-sxm", {"max_prefill_tokens": 16384, "max_num_seqs": 1024, "chunked_prefill": True}),
        ("vllm", "0.8.2", "a100-80gb", {"max_prefill_tokens": 8192, "max_num_seqs": 1024}),
        # 0.8.5: >= 70 GiB devices, the A100-80GB included; 0.9.0 on: not on A100 (the priors)
        ("vllm", "0.8.5", "a100-80gb", {"max_prefill_tokens": 16384, "max_num_seqs": 1024}),
        ("vllm", "0.9.0", "a100-80gb", {"max_prefill_tokens": 8192, "max_num_seqs": 256}),
        ("vllm", "0.33.0", "h200", {"max_prefill_tokens": 16384, "max_num_seqs": 1024, "paged_kv_admission": True}),
        # SGLang: the decaying new_token_ratio before 0.5.22, full reservation of ignore_eos requests from it
        ("sglang", "0.5.21", "h100-sxm", {"paged_kv_admission": True, "cuda_graph_max_batch": 256}),
        ("sglang", "0.5.22", "h100-sxm", {"paged_kv_admission": False, "cuda_graph_max_batch": 256}),
        ("sglang", "0.5.2", "h100-sxm", {"paged_kv_admission": True, "cuda_graph_max_batch": 160}),
        ("sglang", "0.5.2", "h200", {"cuda_graph_max_batch": 256}),
    ],
)
def test_a_release_runs_the_defaults_read_from_its_code(engine, release, gpu, expected):
    cal = get_calibration(gpu, engine, engine_version=release)
    assert {name: getattr(cal, name) for name in expected} == expected


def test_a_release_keeps_the_efficiencies_and_changes_only_the_schedule():
    """On the A100 the package's fit to published vLLM throughputs applies: naming a release keeps its factors."""
    newest, old = get_calibration("a100-80gb", "vllm"), get_calibration("a100-80gb", "vllm", engine_version="0.6.3")
    assert all(getattr(newest, name) == getattr(old, name) for name in FITTED_FIELDS)
    assert newest.calibrated and old.calibrated
    assert (newest.chunked_prefill, old.chunked_prefill) == (True, False)


@pytest.mark.parametrize(
    "engine, version, message",
    [
        ("vllm", "0.4.1", "older than the releases"),
        ("sglang", "0.3.0", "older than the releases"),
        ("torch", "0.6.3", "applies to vllm and sglang"),
        ("vllm", "latest", "no release number"),
    ],
)
def test_a_release_without_tabulated_defaults_is_one_clear_error(engine, version, message):
    with pytest.raises(ArchscaleInputError, match=message):
        release_policy(engine, version, "h100-sxm")


def test_the_shipped_table_covers_each_engine_without_gaps_from_its_first_release():
    for engine, entries in release_table().items():
        assert entries and entries[-1]["high"] is None
        assert all(a["high"] == b["low"] for a, b in zip(entries, entries[1:], strict=False)), engine


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[vllm]]\nreleases = ">=0.5.0,<0.8.0"\n[[vllm]]\nreleases = ">=0.9.0"\n', "leave a gap or overlap"),
        ('[[vllm]]\nreleases = ">=0.5.0"\ncompute_efficiency = 0.5\n', "unknown field"),
        ('[[vllm]]\nreleases = ">=0.5.0,<0.6.0"\n', "must be open-ended"),
        ('[[vllm]]\nreleases = "0.5.0"\n', "must read"),
        ('[[vllm]]\nreleases = ">=0.5.0"\nmax_num_seqs = -256\n', "vllm entry 1.max_num_seqs must be a non-negative"),
        ('[[vllm]]\nreleases = ">=0.5.0"\nchunked_prefill = 1\n', "chunked_prefill must be true or false"),
        (
            '[[vllm]]\nreleases = ">=0.5.0"\n[vllm.gpus.a100-80gb]\nmax_prefill_tokens = 0\n',
            "vllm entry 1.gpus.a100-80gb.max_prefill_tokens must be at least 1",
        ),
    ],
)
def test_a_malformed_table_is_refused_with_the_entry_named(tmp_path, monkeypatch, text, message):
    path = tmp_path / "engine_releases.toml"
    path.write_text(text)
    monkeypatch.setattr(engine_releases, "RELEASES_FILE", path)
    release_table.cache_clear()
    try:
        with pytest.raises(ArchscaleInputError, match=message):
            release_table()
    finally:
        release_table.cache_clear()


def test_predict_names_the_release_and_the_schedule_it_ran(capsys):
    argv = ["predict", "llama-3.2-1b", "--gpu", "h100-sxm", "--engine", "vllm", "--batch-size", "512",
            "--input-len", "512", "--output-len", "256", "--json"]  # fmt: skip
    assert main([*argv, "--engine-version", "0.6.3"]) == 0
    old = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    newest = json.loads(capsys.readouterr().out)
    assert old["engine_version"] == "0.6.3" and newest["engine_version"] is None
    assert old["engine_policy"]["chunked_prefill"] is False and old["engine_policy"]["max_num_seqs"] == 256
    assert newest["engine_policy"]["max_num_seqs"] == 1024  # V1's default on an H100
    assert main([*argv, "--engine-version", "0.6.3", "--max-num-seqs", "128"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_policy"]["max_num_seqs"] == 128  # the option overrides
    assert old["output_tokens_per_s"] != newest["output_tokens_per_s"]


@pytest.mark.parametrize("version", ["0.4.1", "latest"])
def test_predict_refuses_an_untabulated_release_in_one_line(capsys, version):
    argv = ["predict", "llama-3.2-1b", "--gpu", "h100-sxm", "--engine", "vllm", "--batch-size", "8", "--input-len",
            "128", "--output-len", "128", "--engine-version", version]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archscale: error:") and "\n" not in err and "Traceback" not in err


def test_sweep_rows_are_predicted_with_the_release_that_measured_them():
    """Rows of two releases in one file: each is predicted as it would be alone, with its release's schedule."""
    row = sweep_row_groups()[("vllm", "h100-sxm")][0]
    rows = [{**row, "engine_version": version} for version in ("0.5.3", "0.33.0", "0.5.3")]
    gpu, cal = get_gpu("h100-sxm"), get_calibration("h100-sxm", "vllm")
    together = predict_rows(rows, gpu, cal)
    alone = [predict_rows([r], gpu, cal) for r in rows]
    for name in ("output_tokens_per_s", "ttft_s", "concurrency"):
        assert np.array_equal(getattr(together, name), [getattr(e, name)[0] for e in alone])
    for op in together.decode_op_time_s:
        assert np.array_equal(together.decode_op_time_s[op], [e.decode_op_time_s[op][0] for e in alone])
    assert together.output_tokens_per_s[0] == together.output_tokens_per_s[2] != together.output_tokens_per_s[1]


def test_a_calibration_file_without_policy_fields_schedules_as_its_engine(tmp_path):
    """A vLLM table written before paged admission existed (no policy fields at all) schedules as vLLM on that GPU;
    a policy field the file states is kept."""
    from perfmodel.calibration import load_calibration_file

    factors = (
        "compute_efficiency = 0.6\nmemory_efficiency = 0.7\nkernel_launch_overhead_s = 4e-6\n"
        "step_overhead_s = 1e-3\ngpu_memory_utilization = 0.9\nworkspace_bytes = 2147483648\n"
        "calibrated = true\n"
    )
    path = tmp_path / "old.toml"
    path.write_text(f"[h100-sxm.vllm]\n{factors}[h100-sxm.torch]\n{factors}chunked_prefill = true\n")
    tables = load_calibration_file(path)["h100-sxm"]
    vllm, torch_engine = tables["vllm"], tables["torch"]
    assert vllm.paged_kv_admission and vllm.chunked_prefill and vllm.max_num_seqs == 1024
    assert vllm.max_prefill_tokens == 16384 and vllm.cuda_graph_max_batch == 512
    assert vllm.compute_efficiency == 0.6 and vllm.calibrated
    assert torch_engine.chunked_prefill and not torch_engine.paged_kv_admission  # stated: kept; the rest: ours
