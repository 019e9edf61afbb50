"""CUDA-graph batch buckets (perfmodel/cuda_graphs.py): the captured size a decode step replays, against the
engines' own capture lists, and what the padding costs in a prediction."""

import json
from dataclasses import replace

import numpy as np
import pytest

from perfmodel import PRESETS, ArchBatch, estimate, get_gpu, predict
from perfmodel.calibration import engine_priors
from perfmodel.cuda_graphs import graph_batch


def vllm_capture_sizes(max_num_seqs: int) -> list[int]:
    """vLLM's VllmConfig._set_cudagraph_sizes default, written out."""
    top = min(max_num_seqs * 2, 512)
    return [s for s in [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, top + 1, 16)) if s <= top]


def sglang_capture_sizes(max_bs: int) -> list[int]:
    """SGLang's ServerArgs._generate_cuda_graph_batch_sizes without speculative decoding, written out."""
    sizes = [1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, 512, 16)) + list(range(512, max_bs + 1, 32))
    return [s for s in sizes if s <= max_bs]


def replayed(sizes: list[int], n: int) -> int:
    return min((s for s in sizes if s >= n), default=n)  # above the largest: no graph, the batch as it is


def test_the_ladder_is_vllms_and_sglangs_capture_list():
    n = np.arange(1, 1100)
    for max_num_seqs in (256, 50, 137):  # vLLM's largest graph: min(2 · max_num_seqs, 512) — 512, 100, 274
        vllm = graph_batch(n, min(2 * max_num_seqs, 512))
        assert vllm.tolist() == [replayed(vllm_capture_sizes(max_num_seqs), int(k)) for k in n], max_num_seqs
    for max_bs in (32, 100, 256, 300, 512, 1024):
        sglang = graph_batch(n, max_bs)
        expected = [replayed(sglang_capture_sizes(max_bs), int(k)) for k in n]
        differ = [int(k) for k, got, want in zip(n, sglang, expected, strict=True) if got != want]
        assert set(differ) <= {9, 10, 11, 12}  # SGLang also captures 12; the ladder pads 9-12 to 16, as vLLM does


def test_no_graphs_means_no_padding_and_fractional_means_round_up():
    n = np.array([1.0, 3.0, 9.0, 250.0, 700.0])
    assert graph_batch(n, 0).tolist() == n.tolist()
    assert graph_batch(np.array([2.5, 8.01]), 512).tolist() == [4.0, 16.0]
    assert graph_batch(np.array([0.0]), 512).tolist() == [0.0]  # a step with no decode pads nothing


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_decode_step_costs_what_its_captured_size_costs(engine):
    """129 sequences replay the graph of 136: the decode GEMMs cost what they cost at 136 (each dummy row is
    multiplied and written), more than the 129 rows alone; the sampler sees only the 129. The prompts (129 × 32
    tokens) fit one step, so the batch runs as one static wave."""
    gpu = get_gpu("h100-sxm")
    priors = engine_priors(gpu, engine)
    archs = ArchBatch.from_archs([PRESETS["llama-3.2-1b"]])

    def decode_s(batch, cal, op):
        e = estimate(archs, gpu, batch_size=batch, input_len=32, output_len=64, calibration=cal)
        return float(e.decode_op_time_s[op][0])

    no_graphs = replace(priors, cuda_graph_max_batch=0.0)
    assert decode_s(129, priors, "mlp") == pytest.approx(decode_s(136, no_graphs, "mlp"), rel=1e-12)
    assert decode_s(129, no_graphs, "mlp") < decode_s(129, priors, "mlp")
    assert decode_s(129, priors, "sampler") == pytest.approx(decode_s(129, no_graphs, "sampler"), rel=1e-12)


def test_the_cli_and_predict_override_the_engines_largest_graph(capsys):
    """--cuda-graph-max-batch 0 (graphs off, as SGLang's --disable-cuda-graph) drops the padding: 129 sequences cost
    what 129 cost, not what 136 do; the default pads."""
    from harness.cli.main import main

    arch, gpu = PRESETS["llama-3.2-1b"], get_gpu("h100-sxm")
    workload = {"batch_size": 129, "input_len": 128, "output_len": 64, "engine": "sglang"}
    padded, unpadded = (predict(arch, gpu, **workload, cuda_graph_max_batch=m) for m in (None, 0))
    assert padded.decode_op_time_s["mlp"] > unpadded.decode_op_time_s["mlp"]
    argv = ["predict", "llama-3.2-1b", "--gpu", "h100-sxm", "--engine", "sglang", "--batch-size", "129", "--input-len",
            "128", "--output-len", "64", "--json"]  # fmt: skip
    outputs = []
    for extra in ([], ["--cuda-graph-max-batch", "0"]):
        assert main([*argv, *extra]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["tpot_s"])
    assert outputs == [pytest.approx(padded.tpot_s), pytest.approx(unpadded.tpot_s)]
    with pytest.raises(Exception, match="non-negative integer"):
        predict(arch, gpu, **workload, cuda_graph_max_batch=-1)
