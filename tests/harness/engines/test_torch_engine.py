"""Our torch engine serves a workload as the perfmodel describes it and measures it: waves when the KV budget is
short, medians over repeats, tokens/s consistent with the measured time, clear errors for impossible options."""

import pytest

import harness.engines.torch_engine as torch_engine
from harness.engines import get_engine
from harness.engines.base import EngineOptions, Workload
from perfmodel import PRESETS, ArchscaleInputError

TINY = PRESETS["tiny-gqa4"]
CPU = EngineOptions(device="cpu", dtype="float32", attention="torch", memory_utilization=0.5, workspace_bytes=2**26)


def test_measurement_is_consistent_with_its_own_timings():
    workload = Workload(batch_size=3, input_len=20, output_len=6)
    m = get_engine("torch").run(TINY, workload, EngineOptions(**{**CPU.__dict__, "repeats": 3}))
    assert m.status == "ok" and m.concurrency == 3 and m.waves == 1 and len(m.runs) == 3
    for run in m.runs:
        assert run["output_tokens_per_s"] == pytest.approx(3 * 6 / run["total_time_s"])
        assert run["total_tokens_per_s"] == pytest.approx(3 * 26 / run["total_time_s"])
        # one prefill and 5 decode steps fit inside the whole time
        assert 0 < run["ttft_s"] + 5 * run["tpot_s"] <= run["total_time_s"] * 1.001
    assert min(r["ttft_s"] for r in m.runs) <= m.ttft_s <= max(r["ttft_s"] for r in m.runs)  # a median
    assert m.peak_memory_bytes >= TINY.n_params_total * 4  # fp32 weights at least


def _seq_bytes(workload, block_size=16):
    pages = -(-(workload.input_len + workload.output_len) // block_size)
    return 2 * TINY.n_layer * pages * block_size * TINY.n_kv_head * TINY.d_head * 4


def test_a_batch_larger_than_the_kv_budget_runs_in_waves(monkeypatch):
    workload = Workload(batch_size=5, input_len=20, output_len=4)
    room = TINY.n_params_total * 4 + CPU.workspace_bytes + 2.5 * _seq_bytes(workload)  # weights + 2.5 sequences
    monkeypatch.setattr(torch_engine, "device_memory_bytes", lambda device: room / CPU.memory_utilization)
    m = get_engine("torch").run(TINY, workload, CPU)
    assert m.status == "ok" and m.concurrency == 2 and m.waves == 3  # 2 + 2 + 1
    assert m.output_tokens_per_s == pytest.approx(5 * 4 / m.total_time_s)


def test_not_even_one_sequence_is_an_oom_row_not_a_crash(monkeypatch):
    monkeypatch.setattr(torch_engine, "device_memory_bytes", lambda device: TINY.n_params_total * 4)
    m = get_engine("torch").run(TINY, Workload(2, 20, 4), CPU)
    assert m.status == "oom" and "KV-cache budget" in m.message and m.output_tokens_per_s is None


def test_single_output_token_has_no_decode_step():
    m = get_engine("torch").run(TINY, Workload(2, 16, 1), CPU)
    assert m.status == "ok" and m.tpot_s == 0.0 and m.ttft_s > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "cuda"}, "no CUDA GPU"),
        ({"dtype": "int8"}, "dtype must be"),
        ({"attention": "flash"}, "attention must be"),
    ],
)
def test_impossible_options_are_one_clear_error(options, message):
    import torch

    if options.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ArchscaleInputError, match=message):
        get_engine("torch").run(TINY, Workload(1, 8, 2), EngineOptions(**{**CPU.__dict__, **options}))


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ArchscaleInputError, match="TRITON_INTERPRET=1"):
        get_engine("torch").run(TINY, Workload(1, 8, 2), EngineOptions(**{**CPU.__dict__, "attention": "triton"}))


def test_an_unknown_engine_is_a_clear_error():
    with pytest.raises(ArchscaleInputError, match="unknown engine"):
        get_engine("tensorrt")


def test_the_triton_attention_path_serves_a_workload():
    """Plan once per wave size, run every step (the CUDA-graph path's structure, eager on the CPU interpreter)."""
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("a CUDA machine runs this path in the gpu tests")
    m = get_engine("torch").run(TINY, Workload(3, 12, 4), EngineOptions(**{**CPU.__dict__, "attention": "triton"}))
    assert m.status == "ok" and m.concurrency == 3 and m.tpot_s > 0


def test_ttft_is_summarized_per_request_from_the_moment_all_were_queued():
    """Two waves: the first prefills 2 requests in two forwards (first tokens at 1 s and 2 s) and ends at 5 s; the
    second, 1 request, has its first token 1 s into it. TTFTs 1, 2, 6: mean 3, p50 2, p99 6 (nearest rank)."""
    waves = [torch_engine.WaveTiming(prefill_s=2.0, first_token_s=[1.0, 2.0], step_s=[1.0, 2.0], total_s=5.0),
             torch_engine.WaveTiming(prefill_s=1.0, first_token_s=[1.0], step_s=[0.5, 0.5], total_s=2.0)]  # fmt: skip
    summary = torch_engine._summarize(waves[:1], waves, Workload(batch_size=3, input_len=8, output_len=3))
    assert summary["ttft_s"] == pytest.approx(3.0)
    assert (summary["ttft_p50_s"], summary["ttft_p99_s"]) == (2.0, 6.0)
    assert summary["prefill_time_s"] == 2.0 and summary["tpot_s"] == 1.5 and summary["total_time_s"] == 7.0


def test_each_prefill_forward_gives_its_requests_their_first_token():
    """One prompt per forward (max_prefill_tokens = input_len): first tokens come one forward apart, the last at the
    end of the wave's prefill."""
    import torch

    from harness.engines.llama import LlamaModel, LlamaWeights, PagedKVCache

    workload = Workload(batch_size=3, input_len=20, output_len=2)
    weights = LlamaWeights.random(TINY, torch.float32, torch.device("cpu"), seed=0)
    cache = PagedKVCache(TINY, 3 * 2, 16, torch.float32, torch.device("cpu"))
    model = LlamaModel(TINY, weights, attention="torch", max_prefill_tokens=20)
    runner = torch_engine.WaveRunner(model, cache, 3, 2, workload, CPU)
    wave = runner.serve(torch.randint(0, TINY.vocab, (3, 20)))
    assert len(wave.first_token_s) == 3
    assert wave.first_token_s[0] < wave.first_token_s[1] < wave.first_token_s[2] == wave.prefill_s
    assert wave.prefill_s < wave.total_s
