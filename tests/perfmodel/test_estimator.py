"""The roofline + KV-cache estimator: a hand-computed tiny case, the closed-form decode sum, and properties."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perfmodel import PRESETS, Arch, ArchBatch, Calibration, Hardware, estimate, get_calibration, get_gpu, predict
from perfmodel.estimator import sum_max_affine

SINGLE_GPU_PRESETS = sorted(name for name in PRESETS if name != "llama-3.1-70b")  # 70B needs --tp on any one GPU

TOY_GPU = Hardware("toy", "toy", hbm_bandwidth_bytes_per_s=1e12, peak_bf16_flops_per_s=1e14,
                   peak_fp16_flops_per_s=1e14, memory_bytes=1e12, sm_count=1)  # fmt: skip
IDEAL = Calibration(compute_efficiency=1.0, memory_efficiency=1.0, kernel_launch_overhead_s=0.0, step_overhead_s=0.0,
                    gpu_memory_utilization=1.0, workspace_bytes=0, calibrated=False)  # fmt: skip
TINY = Arch(d_model=64, n_layer=2, n_head=4, n_kv_head=2, d_head=16, d_ff=128, vocab=1000, tie_embeddings=True)


def roofline_s(flops, nbytes):
    return max(flops / 1e14, nbytes / 1e12)


def matmul(tokens, k, n, B=2):
    """FLOPs and minimum bytes of [tokens, k] @ [k, n] in a B-byte dtype."""
    return 2 * tokens * k * n, B * (k * n + tokens * k + tokens * n)


def test_tiny_case_matches_a_hand_computed_roofline():
    """Batch 1, 8 prompt tokens, 2 output tokens (one decode step at KV length 9), ideal efficiencies."""
    B, d, L, hq, hkv, dh, dff, V = 2, 64, 2, 4, 2, 16, 128, 1000
    seq_in = 8

    def forward_s(tokens, attn_flops, attn_bytes):
        qkv = matmul(tokens, d, (hq + 2 * hkv) * dh)
        o = matmul(tokens, hq * dh, d)
        # SwiGLU: gate and up read x once ([d, 2*dff] GEMM), SiLU*mul reads 2*dff writes dff, down GEMM.
        mlp_flops = 2 * tokens * d * 2 * dff + 2 * tokens * dff * d
        mlp_bytes = B * (3 * d * dff + tokens * (d + 2 * dff) + tokens * 3 * dff + tokens * (dff + d))
        # 2 RMSNorms per layer + final, each with its residual add: read x and residual, write both
        norms = (5 * tokens * d * (2 * L + 1), B * 4 * tokens * d * (2 * L + 1))
        # The model times each op over all layers at once; every term scales with L, so that equals L x one layer.
        layers = L * (roofline_s(*qkv) + roofline_s(*o) + roofline_s(mlp_flops, mlp_bytes)) + roofline_s(*norms)
        embedding = B * 2 * tokens * d / 1e12
        lm_head = roofline_s(2 * 1 * d * V, B * (V * d + d + V))  # last token of the one sequence, bf16 logits
        # greedy sampler: cast the V logits to fp32 (read 2 + write 4 bytes each), argmax reads them (4 bytes each)
        sampler = roofline_s(V, V * (2 + 4 + 4))
        return layers + roofline_s(attn_flops, attn_bytes) + embedding + lm_head + sampler

    rope = 2 * (hq + hkv) * dh  # rotary reads and writes q and k
    prefill_attn = (L * 2 * hq * dh * seq_in**2,
                    L * B * seq_in * (rope + (hq + 2 * hkv) * dh + hq * dh + 2 * hkv * dh))  # fmt: skip
    kv = seq_in + 1
    decode_attn = (L * 4 * hq * dh * kv, L * B * (kv * 2 * hkv * dh + rope + 2 * hq * dh + 2 * hkv * dh))
    expected_ttft = forward_s(seq_in, *prefill_attn)
    expected_tpot = forward_s(1, *decode_attn)

    result = predict_on(TINY, batch_size=1, input_len=seq_in, output_len=2)
    assert result.ttft_s[0] == pytest.approx(expected_ttft, rel=1e-12)  # one request: mean = its prefill
    assert result.prefill_time_s[0] == pytest.approx(expected_ttft, rel=1e-12)
    assert result.tpot_s[0] == pytest.approx(expected_tpot, rel=1e-12)
    assert result.output_tokens_per_s[0] == pytest.approx(2 / (expected_ttft + expected_tpot), rel=1e-12)


def predict_on(arch, gpu=TOY_GPU, calibration=IDEAL, **workload):
    return estimate(ArchBatch.from_archs([arch]), gpu, calibration=calibration, **workload)


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 10_000),
    count=st.integers(0, 300),
    lines=st.lists(st.integers(-50, 50), min_size=4, max_size=4),  # exact arithmetic: ties are real ties
)
def test_sum_max_affine_equals_the_explicit_sum(first, count, lines):
    a1, b1, a2, b2 = lines
    ells = np.arange(first, first + count, dtype=np.float64)
    first_line, second_line = a1 * ells + b1, a2 * ells + b2
    total, part1 = sum_max_affine(first, count, a1, b1, a2, b2)
    scale = 1 + np.abs(first_line).sum() + np.abs(second_line).sum()
    assert total == pytest.approx(np.maximum(first_line, second_line).sum(), abs=1e-9 * scale)
    assert part1 == pytest.approx(first_line[first_line >= second_line].sum(), abs=1e-9 * scale)


def test_closed_form_decode_equals_a_per_step_sum():
    """Total decode time over 511 steps equals the sum of single-step estimates at each KV length (static waves:
    chunked prefill off, so the 32 prompts are prefilled before the first decode step)."""
    arch, gpu = PRESETS["llama-3.2-1b"], get_gpu("h100-sxm")
    cal = replace(get_calibration("h100-sxm", "vllm"), chunked_prefill=False)
    batch, prompt, out = 32, 1000, 512
    whole = predict_on(arch, gpu, cal, batch_size=batch, input_len=prompt, output_len=out)
    per_step = 0.0
    for kv_len in range(prompt + 1, prompt + out):  # test-only loop: one decode step = a 2-token request's step
        step = predict_on(arch, gpu, cal, batch_size=batch, input_len=kv_len - 1, output_len=2)
        per_step += step.decode_time_s[0]
    assert whole.decode_time_s[0] == pytest.approx(per_step, rel=1e-9)


H200 = get_gpu("h200")


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(SINGLE_GPU_PRESETS),
    batch_size=st.integers(1, 512),
    input_len=st.integers(1, 16384),
    output_len=st.integers(1, 4096),
    factor=st.floats(1.01, 4.0),
)
def test_throughput_never_falls_when_bandwidth_rises(name, batch_size, input_len, output_len, factor):
    faster = replace(H200, hbm_bandwidth_bytes_per_s=H200.hbm_bandwidth_bytes_per_s * factor)
    cal = get_calibration("h200", "torch")
    workload = dict(batch_size=batch_size, input_len=input_len, output_len=output_len)
    slow = predict_on(PRESETS[name], H200, cal, **workload).output_tokens_per_s[0]
    fast = predict_on(PRESETS[name], faster, cal, **workload).output_tokens_per_s[0]
    assert fast >= slow * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SINGLE_GPU_PRESETS), batch_size=st.integers(1, 256), input_len=st.integers(1, 32000))
def test_decode_step_time_rises_with_context_length(name, batch_size, input_len):
    cal = get_calibration("h200", "torch")
    short = predict_on(PRESETS[name], H200, cal, batch_size=batch_size, input_len=input_len, output_len=2)
    longer = predict_on(PRESETS[name], H200, cal, batch_size=batch_size, input_len=input_len + 512, output_len=2)
    assume(longer.concurrency[0] == short.concurrency[0])  # same number of sequences per step
    # A longer context may get more KV splits, so more of the GPU busy and a faster step: compare at equal occupancy.
    assume(longer.decode_attention_occupancy[0] == short.decode_attention_occupancy[0])
    assert longer.tpot_s[0] > short.tpot_s[0]


@given(n_kv_head=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_kv_bytes_scale_with_kv_heads(n_kv_head):
    base = replace(PRESETS["llama-3.2-1b"], n_kv_head=1)
    assert replace(base, n_kv_head=n_kv_head).kv_bytes_per_token == n_kv_head * base.kv_bytes_per_token


def test_gqa8_beats_its_mha_twin_at_batch_128_in_4096():
    """Same N: the MHA twin spends the GQA model's saved K/V parameters on a larger MLP."""
    gqa8 = Arch(2048, 16, 32, 4, 64, 8192, 128256, tie_embeddings=True)
    saved = 2 * 2048 * (32 - 4) * 64  # K and V projection params of the 28 KV heads MHA adds
    mha = replace(gqa8, n_kv_head=32, d_ff=8192 - saved // (3 * 2048))
    assert mha.n_params_non_embedding == pytest.approx(gqa8.n_params_non_embedding, rel=1e-3)
    fast = predict(gqa8, H200, batch_size=128, input_len=4096, output_len=1024)
    slow = predict(mha, H200, batch_size=128, input_len=4096, output_len=1024)
    assert fast.output_tokens_per_s > 2 * slow.output_tokens_per_s  # 8x less KV to read per token


def test_capacity_limit_engages_for_llama_3b_with_32k_prompts_on_a100_40gb():
    p = predict(PRESETS["llama-3.2-3b"], get_gpu("a100-40gb"), batch_size=1024, input_len=32768, output_len=1024)
    # KV per sequence: 2·28 layers·8 heads·128·2 bytes·33792 tokens ≈ 3.9 GB; 36 GB usable − 6.4 GB weights.
    kv_per_seq = 2 * 28 * 8 * 128 * 2 * (32768 + 1024)
    assert p.capacity_limited
    assert p.max_concurrent_seqs == int((40e9 * 0.9 - PRESETS["llama-3.2-3b"].weight_bytes - 2**31) // kv_per_seq)
    assert p.concurrency == p.max_concurrent_seqs < 1024
    assert p.peak_memory_bytes <= 40e9


def test_capacity_limit_does_not_engage_when_everything_fits():
    p = predict(PRESETS["llama-3.2-1b"], H200, batch_size=128, input_len=4096, output_len=1024)
    assert not p.capacity_limited and p.concurrency == 128


def test_capacity_limited_batch_runs_in_waves():
    a100 = get_gpu("a100-40gb")
    workload = dict(input_len=32768, output_len=256)
    cap = predict(PRESETS["llama-3.2-3b"], a100, batch_size=1, **workload).max_concurrent_seqs
    one_wave = predict(PRESETS["llama-3.2-3b"], a100, batch_size=cap, **workload)
    three_waves = predict(PRESETS["llama-3.2-3b"], a100, batch_size=3 * cap, **workload)
    assert three_waves.total_time_s == pytest.approx(3 * one_wave.total_time_s)
    assert three_waves.output_tokens_per_s == pytest.approx(one_wave.output_tokens_per_s)


def test_vectorized_estimate_equals_scalar_predictions():
    names = SINGLE_GPU_PRESETS
    batch_sizes = np.array([[1, 7, 64, 300]])
    grid = estimate(ArchBatch.from_archs([PRESETS[n] for n in names]).column(), H200,
                    batch_size=batch_sizes, input_len=2048, output_len=256,
                    calibration=get_calibration("h200", "torch"))  # fmt: skip
    assert grid.output_tokens_per_s.shape == (len(names), 4)
    for i, name in enumerate(names):
        for j, b in enumerate(batch_sizes[0]):
            one = predict(PRESETS[name], H200, batch_size=int(b), input_len=2048, output_len=256)
            assert grid.output_tokens_per_s[i, j] == pytest.approx(one.output_tokens_per_s, rel=1e-12)
            assert grid.ttft_s[i, j] == pytest.approx(one.ttft_s, rel=1e-12)


def test_decode_is_memory_bound_and_long_prefill_compute_bound_for_llama_1b():
    p = predict(PRESETS["llama-3.2-1b"], H200, batch_size=16, input_len=4096, output_len=256).to_dict()
    assert (p["prefill_bound"], p["decode_bound"]) == ("compute", "memory")


def test_small_gemms_pay_the_half_efficiency_rows():
    """With M½ = 24 a compute-bound GEMM of M rows takes (1 + 24/M) times its roofline time; other ops do not."""
    arch = Arch(d_model=4096, n_layer=1, n_head=32, n_kv_head=8, d_head=128, d_ff=14336, vocab=1000)
    slow_gpu = replace(TOY_GPU, peak_bf16_flops_per_s=1e11)  # every GEMM compute-bound
    half = replace(IDEAL, gemm_half_efficiency_tokens=24.0)
    for batch in (1, 8, 64):
        base, small = (estimate(ArchBatch.from_archs([arch]), slow_gpu, batch_size=batch, input_len=64, output_len=2,
                                calibration=cal) for cal in (IDEAL, half))  # fmt: skip
        for op in ("qkv_proj", "o_proj", "mlp", "lm_head"):  # decode: M = batch
            assert small.decode_op_time_s[op][0] == pytest.approx(base.decode_op_time_s[op][0] * (1 + 24 / batch))
            assert small.prefill_op_time_s[op][0] > base.prefill_op_time_s[op][0]
        assert small.prefill_op_time_s["mlp"][0] == pytest.approx(
            base.prefill_op_time_s["mlp"][0] * (1 + 24 / (64 * batch))
        )
        assert small.decode_op_time_s["attention"][0] == base.decode_op_time_s["attention"][0]
        assert small.decode_op_time_s["norms"][0] == base.decode_op_time_s["norms"][0]
