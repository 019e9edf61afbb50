"""Tensor and data parallelism: the larger presets against their config.json, Llama-3.1-8B at TP 1/2/4/8 on an H100
worked by hand (weights per GPU, KV capacity, all-reduce time), vLLM's rules for the TP degree, and properties."""

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import PRESETS, Arch, ArchBatch, ArchscaleInputError, estimate, get_calibration, get_gpu, predict
from perfmodel.parallel import check_tp

GiB = 2**30
# config.json of each model on the Hugging Face Hub (the keys Arch reads), and its parameter count in billions as its
# model card prints it (the preset must be within one unit of its last digit).
HUB_CONFIGS = {
    "llama-3.1-8b": ({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                      "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
                      "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, "8.03"),
    "llama-3.1-70b": ({"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
                       "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256,
                       "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, "70.6"),
    "qwen2.5-7b": ({"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                    "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
                    "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, "7.61"),
    "qwen2.5-0.5b": ({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
                      "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
                      "tie_word_embeddings": True, "torch_dtype": "bfloat16"}, "0.49"),
    "qwen2.5-3b": ({"model_type": "qwen2", "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                    "num_key_value_heads": 2, "intermediate_size": 11008, "vocab_size": 151936,
                    "tie_word_embeddings": True, "torch_dtype": "bfloat16"}, "3.09"),
    "qwen3-8b": ({"model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
                  "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, "8.2"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HUB_CONFIGS))
def test_public_presets_match_their_config_json(name):
    config, published_billions = HUB_CONFIGS[name]
    from_hub = Arch.from_hf_config(config, name=name)
    assert from_hub == PRESETS[name]
    last_digit = 10.0 ** -len(published_billions.split(".")[1])  # cards round, or cut, to this many decimals
    assert abs(PRESETS[name].n_params_total / 1e9 - float(published_billions)) < last_digit


def llama_8b_per_gpu_params(tp):
    """Llama-3.1-8B, one GPU of TP `tp` <= 8: attention, MLP, embedding and LM head split; norms whole."""
    d, L, dff, V = 4096, 32, 14336, 128256
    attention = d * d * 2 + d * 1024 * 2  # q, o (32 heads x 128) and k, v (8 heads x 128)
    mlp = 3 * d * dff
    return L * (attention + mlp) // tp + L * 2 * d + d + 2 * d * V // tp


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_llama_3_1_8b_on_h100_by_hand(tp):
    arch, gpu = PRESETS["llama-3.1-8b"], get_gpu("h100-sxm")
    cal = get_calibration(gpu, "vllm")
    batch, input_len, output_len = 16, 1024, 129
    e = estimate(ArchBatch.from_archs([arch]), gpu, batch_size=batch, input_len=input_len, output_len=output_len,
                 calibration=cal, tp=tp)  # fmt: skip
    weights = 2 * llama_8b_per_gpu_params(tp)
    assert e.weight_bytes[0] == weights
    kv_per_token = 2 * 32 * (8 // tp) * 128 * 2  # K and V, every layer, this GPU's KV heads, bf16
    assert e.kv_bytes_per_token[0] == kv_per_token
    usable = 0.9 * 79.11 * GiB - weights - 2 * GiB
    fits = math.floor(usable / (kv_per_token * (input_len + output_len)))
    assert e.max_concurrent_seqs[0] == min(fits, 1024)  # vLLM runs at most 1024 sequences on an H100 by default
    # one decode step: 2 all-reduces per layer + 1 (embedding) of 16 x 4096 bf16 activations, and a gather of the
    # 16 x 128256 bf16 logits, over NVLink 4 at 450 GB/s x 0.8 with 8 us per collective
    bandwidth, latency = 450e9 * 0.8, 8e-6
    allreduce = latency + 2 * (tp - 1) / tp * (16 * 4096 * 2) / bandwidth
    gather = latency + (tp - 1) / tp * (16 * 128256 * 2) / bandwidth
    per_step = 65 * allreduce + gather if tp > 1 else 0.0
    assert e.decode_op_time_s["communication"][0] / (output_len - 1) == pytest.approx(per_step, rel=1e-12, abs=0)
    if tp > 1:
        assert 0.5e-3 < per_step < 0.6e-3  # latency-bound at batch 16: about half a millisecond per step


def test_tp_1_is_the_single_gpu_model():
    arch, gpu = PRESETS["llama-3.2-1b"], get_gpu("h100-sxm")
    cal = get_calibration(gpu, "torch")
    kw = dict(batch_size=64, input_len=2048, output_len=256, calibration=cal)
    plain = estimate(ArchBatch.from_archs([arch]), gpu, **kw)
    explicit = estimate(ArchBatch.from_archs([arch]), gpu, tp=1, dp=1, **kw)
    assert plain.output_tokens_per_s[0] == explicit.output_tokens_per_s[0]
    assert plain.weight_bytes[0] == arch.weight_bytes
    assert plain.decode_op_time_s["communication"][0] == 0.0 == plain.prefill_op_time_s["communication"][0]


def test_data_parallel_replicas_add_their_throughput():
    arch, gpu = PRESETS["llama-3.1-8b"], get_gpu("h100-sxm")
    one = predict(arch, gpu, batch_size=64, input_len=1024, output_len=256)
    four = predict(arch, gpu, batch_size=256, input_len=1024, output_len=256, dp=4)
    assert four.output_tokens_per_s == pytest.approx(4 * one.output_tokens_per_s, rel=1e-12)
    assert (four.ttft_s, four.tpot_s, four.concurrency) == (one.ttft_s, one.tpot_s, one.concurrency)
    # an uneven split: the fullest replica (ceil(257 / 4) = 65 requests) sets the time
    uneven = predict(arch, gpu, batch_size=257, input_len=1024, output_len=256, dp=4)
    ref = predict(arch, gpu, batch_size=65, input_len=1024, output_len=256)
    assert uneven.output_tokens_per_s == pytest.approx(257 * 256 / ref.total_time_s, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "tp", "message"),
    [
        ("qwen2.5-7b", 8, "n_head=28 is not divisible by --tp 8"),
        ("qwen2.5-7b", 3, "n_head=28 is not divisible by --tp 3"),
        ("small-kv3", 5, "--tp 5 is not a multiple of n_kv_head=3"),  # 15 query heads split, 3 KV heads cannot
        ("panda-1b", 4, "n_kv_head=18 is not divisible by --tp 4"),  # 72 query heads split, 18 KV heads do not
        ("small-kv3", 3, "d_ff=1792 is not divisible by --tp 3"),
    ],
)
def test_tp_degrees_vllm_refuses_are_one_clear_error(name, tp, message):
    with pytest.raises(ArchscaleInputError, match=message):
        predict(PRESETS[name], get_gpu("h100-sxm"), batch_size=1, input_len=16, output_len=16, tp=tp)


def test_kv_heads_are_replicated_when_fewer_than_gpus():
    """Qwen2.5-1.5B has 2 KV heads: at TP 4 each GPU holds one (vLLM replicates), so the per-GPU KV cache per token
    is half the whole model's, not a quarter."""
    arch = PRESETS["qwen2.5-1.5b"]
    check_tp(arch, 4)
    e = estimate(ArchBatch.from_archs([arch]), get_gpu("h100-sxm"), batch_size=1, input_len=16, output_len=16,
                 calibration=get_calibration("h100-sxm", "vllm"), tp=4)  # fmt: skip
    assert e.kv_bytes_per_token[0] == arch.kv_bytes_per_token / 2


def test_70b_fits_only_when_sharded():
    arch, gpu = PRESETS["llama-3.1-70b"], get_gpu("h100-sxm")
    with pytest.raises(ArchscaleInputError, match="a larger --tp splits them"):
        predict(arch, gpu, batch_size=1, input_len=128, output_len=128)
    p = predict(arch, gpu, batch_size=1, input_len=128, output_len=128, tp=4)
    assert p.weight_bytes < 0.26 * arch.weight_bytes


def test_tp_without_interconnect_figures_is_one_clear_error():
    gpu = replace(get_gpu("h100-sxm"), interconnect_bandwidth_bytes_per_s=None, interconnect_latency_s=None)
    with pytest.raises(ArchscaleInputError, match="no interconnect figures"):
        predict(PRESETS["llama-3.1-8b"], gpu, batch_size=1, input_len=16, output_len=16, tp=2)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "llama-3.2-3b"]), tp=st.sampled_from([1, 2, 4, 8]),
       batch_size=st.integers(1, 512), input_len=st.integers(1, 8192), output_len=st.integers(1, 2048),
       gain=st.floats(1.0, 8.0))  # fmt: skip
def test_more_link_bandwidth_never_slows_and_tp_never_adds_weight_per_gpu(name, tp, batch_size, input_len, output_len,
                                                                          gain):  # fmt: skip
    arch, gpu = PRESETS[name], get_gpu("h100-sxm")
    faster = replace(gpu, interconnect_bandwidth_bytes_per_s=gpu.interconnect_bandwidth_bytes_per_s * gain)
    kw = dict(batch_size=batch_size, input_len=input_len, output_len=output_len,
              calibration=get_calibration(gpu, "vllm"), tp=tp)  # fmt: skip
    base = estimate(ArchBatch.from_archs([arch]), gpu, **kw)
    better = estimate(ArchBatch.from_archs([arch]), faster, **kw)
    if base.feasible[0]:
        assert better.output_tokens_per_s[0] >= base.output_tokens_per_s[0] * (1 - 1e-12)
    single = estimate(ArchBatch.from_archs([arch]), gpu, **{**kw, "tp": 1})
    assert base.weight_bytes[0] <= single.weight_bytes[0]
