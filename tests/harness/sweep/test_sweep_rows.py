"""Sweep rows as a data set (harness/sweep/rows.py): which rows count as measured, and the engine limits each row's
prediction uses."""

import json

import pytest

from harness.calibrate.published import sweep_row_groups
from harness.sweep.rows import engine_limits, load_sweeps, predict_rows
from perfmodel import get_gpu
from perfmodel.calibration import engine_priors


@pytest.fixture
def vllm_row():
    """A published vLLM row on H100 (1000 requests of 256 / 256): a throughput-only sweep row."""
    return sweep_row_groups()[("vllm", "h100-sxm")][0]


def test_the_engines_reported_limits_come_first_then_the_options(vllm_row):
    assert engine_limits(vllm_row) == {}  # the source states none: the engine's defaults apply
    row = {**vllm_row, "options": {"max_num_seqs": 64, "max_prefill_tokens": 2048},
           "engine_config": {"max_num_seqs": 32, "max_num_batched_tokens": None}}  # fmt: skip
    assert engine_limits(row) == {"max_num_seqs": 32, "max_prefill_tokens": 2048}
    sglang = {**vllm_row, "engine_config": {"max_running_requests": 48, "chunked_prefill_size": 4096}}
    assert engine_limits(sglang) == {"max_num_seqs": 48, "max_prefill_tokens": 4096}


def test_a_reported_cap_on_running_sequences_shapes_the_prediction(vllm_row):
    gpu = get_gpu("h100-sxm")
    priors = engine_priors(gpu, "vllm")
    capped = {**vllm_row, "engine_config": {"max_num_seqs": 8}}
    default, small = predict_rows([vllm_row, capped], gpu, priors).output_tokens_per_s
    assert small < 0.5 * default  # 8 sequences at a time instead of vLLM's 1024 on an H100


def test_rows_without_phase_timings_are_measured_and_rows_without_a_rate_are_set_aside(tmp_path, vllm_row):
    rows = [vllm_row, {**vllm_row, "batch_size": 3, "output_tokens_per_s": None}]
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_sweeps([path])
    assert [row["batch_size"] for row in data.rows] == [vllm_row["batch_size"]]
    assert len(data.excluded) == 1 and "b=3" in data.excluded[0] and "no output_tokens_per_s" in data.excluded[0]


def test_repeated_points_merge_to_their_medians_in_first_seen_order(tmp_path, vllm_row):
    rows = [{**vllm_row, "output_tokens_per_s": rate} for rate in (100.0, 130.0, 110.0)]
    rows.insert(1, {**vllm_row, "batch_size": 7})
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    merged, other = load_sweeps([path]).rows
    assert (merged["measurements"], merged["measured_range"], merged["output_tokens_per_s"]) == (3, [100.0, 130.0],
                                                                                               110.0)  # fmt: skip
    assert (other["batch_size"], other["measurements"], other["measured_range"]) == (7, 1, None)


def test_runs_with_other_options_or_engine_versions_are_not_merged(tmp_path, vllm_row):
    """The same point run with another prefill budget, or on another build of the engine, is another measurement."""
    rows = [vllm_row, {**vllm_row, "options": {"max_prefill_tokens": 2048}},
            {**vllm_row, "metadata": {**vllm_row["metadata"], "engine_version": "other"}}, dict(vllm_row)]  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [row["measurements"] for row in load_sweeps([path]).rows] == [2, 1, 1]
