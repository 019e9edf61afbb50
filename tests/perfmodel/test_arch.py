"""Architecture arithmetic: every preset's derived numbers by hand, config.json in and out, bad configs."""

import json
import math

import pytest

from perfmodel import PRESETS, Arch, ArchBatch, ArchscaleInputError, resolve_arch


def attention(d, hq, hkv, dh):
    return d * hq * dh + 2 * d * hkv * dh + hq * dh * d  # q, k+v, o


@pytest.mark.parametrize(
    ("name", "d", "hq", "hkv", "dh", "dff", "r_expected"),
    [
        # r values quoted in arXiv 2510.18245 / DESIGN.md: LLaMA-3.2-1B 4.80, Panda-1B ~1.07, Surefire-1B ~3.6
        ("llama-3.2-1b", 2048, 32, 8, 64, 8192, 4.80),
        ("panda-1b", 2560, 72, 18, 64, 4096, 1.07),
        ("surefire-1b", 2560, 36, 4, 64, 6144, 3.6),
        ("llama-3.2-3b", 3072, 24, 8, 128, 8192, 3.0),
        ("panda-3b", 4096, 36, 12, 128, 4096, 1.0),
        ("surefire-3b", 4096, 42, 6, 128, 4096, 1.0),
    ],
)
def test_mlp_attention_ratio_of_presets(name, d, hq, hkv, dh, dff, r_expected):
    arch = PRESETS[name]
    assert arch.attn_params_per_layer == attention(d, hq, hkv, dh)
    assert arch.mlp_params_per_layer == 3 * d * dff
    assert arch.mlp_attn_ratio == pytest.approx(3 * d * dff / attention(d, hq, hkv, dh))
    assert arch.mlp_attn_ratio == pytest.approx(r_expected, abs=0.01)


@pytest.mark.parametrize(
    ("name", "total_expected", "rel"),
    [
        ("llama-3.2-1b", 1.24e9, 0.01),  # model card: 1.23B (1,235,814,400 with tied embeddings)
        ("llama-3.2-3b", 3.21e9, 0.01),  # model card: 3.21B
        ("qwen2.5-1.5b", 1.54e9, 0.01),  # model card: 1.54B total, 1.31B non-embedding
        ("qwen3-0.6b", 0.6e9, 0.02),  # model card: 0.6B total, 0.44B non-embedding
    ],
)
def test_total_parameters_match_model_cards(name, total_expected, rel):
    assert PRESETS[name].n_params_total == pytest.approx(total_expected, rel=rel)


def test_llama_3_2_1b_counts_by_hand():
    a = PRESETS["llama-3.2-1b"]
    per_layer = attention(2048, 32, 8, 64) + 3 * 2048 * 8192 + 2 * 2048
    assert a.n_params_non_embedding == 16 * per_layer + 2048
    assert a.n_params_embedding == 128256 * 2048  # tied: counted once
    assert a.n_params_total == 1_235_814_400
    assert a.gqa_group == 4
    assert a.kv_bytes_per_token == 2 * 16 * 8 * 64 * 2  # K and V, 16 layers, 8 KV heads, bf16
    assert a.hidden_size_factor == pytest.approx(2048 / math.sqrt(a.n_params_non_embedding))


def test_qwen_non_embedding_counts_match_model_cards():
    assert PRESETS["qwen2.5-1.5b"].n_params_non_embedding == pytest.approx(1.31e9, rel=0.01)
    assert PRESETS["qwen3-0.6b"].n_params_non_embedding == pytest.approx(0.44e9, rel=0.01)


def test_untied_embeddings_count_the_lm_head():
    tied = PRESETS["llama-3.2-1b"]
    untied = Arch(**{**vars(tied), "tie_embeddings": False})
    assert untied.n_params_total - tied.n_params_total == 128256 * 2048


@pytest.mark.parametrize("name", list(PRESETS))
def test_hf_config_round_trip(name, tmp_path):
    arch = PRESETS[name]
    path = tmp_path / name / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(arch.to_hf_config()))
    assert Arch.from_hf_config(path) == arch
    assert resolve_arch(str(path)) == arch


def test_from_hf_config_reads_real_llama_keys():
    # The keys of meta-llama/Llama-3.2-1B's config.json (values from the Hub).
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "rope_scaling": {"factor": 32.0, "rope_type": "llama3"},
    }
    arch = Arch.from_hf_config(config)
    assert arch.n_params_total == PRESETS["llama-3.2-1b"].n_params_total
    del config["head_dim"]  # older configs derive it from hidden_size / heads
    assert Arch.from_hf_config(config).d_head == 64


def write(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        ({"num_attention_heads": 30}, "not divisible"),
        ({"hidden_size": 0}, "positive integer"),
        ({"intermediate_size": -5}, "positive integer"),
        ({"num_hidden_layers": "16"}, "positive integer"),
        ({"model_type": "gpt2"}, "not supported"),
        ({"torch_dtype": "int3"}, "unsupported torch_dtype"),
    ],
)
def test_bad_config_values_fail_clearly(tmp_path, mutation, message):
    config = {**PRESETS["llama-3.2-1b"].to_hf_config(), **mutation}
    with pytest.raises(ArchscaleInputError, match=message):
        Arch.from_hf_config(write(tmp_path, json.dumps(config)))


def test_missing_key_names_the_key(tmp_path):
    config = PRESETS["llama-3.2-1b"].to_hf_config()
    del config["intermediate_size"]
    with pytest.raises(ArchscaleInputError, match="missing key 'intermediate_size'"):
        Arch.from_hf_config(write(tmp_path, json.dumps(config)))


def test_malformed_json_and_missing_file(tmp_path):
    with pytest.raises(ArchscaleInputError, match="malformed JSON at line 1"):
        Arch.from_hf_config(write(tmp_path, '{"hidden_size": 2048,'))
    with pytest.raises(ArchscaleInputError, match="no such config file"):
        Arch.from_hf_config(tmp_path / "absent.json")
    with pytest.raises(ArchscaleInputError, match="JSON object"):
        Arch.from_hf_config(write(tmp_path, "[1, 2]"))


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(ArchscaleInputError, match="did you mean: llama-3.2-1b"):
        resolve_arch("llama-3.2-1")


def test_from_budget_recovers_panda_1b():
    """The paper's Panda-1B: the budget of LLaMA-3.2-1B at x = 0.08, r = 1.07, GQA 4, d_head 64, 16 layers."""
    llama = PRESETS["llama-3.2-1b"]
    panda = Arch.from_budget(
        llama.n_params_non_embedding,
        hidden_size_factor=2560 / math.sqrt(llama.n_params_non_embedding),
        mlp_attn_ratio=1.07,
        gqa_group=4,
        d_head=64,
        n_layer=16,
        vocab=128256,
        tie_embeddings=True,
    )
    assert (panda.d_model, panda.n_head, panda.n_kv_head, panda.d_ff) == (2560, 72, 18, 4096)
    assert panda.n_params_non_embedding == pytest.approx(llama.n_params_non_embedding, rel=0.01)


def test_from_budget_rejects_impossible_budgets():
    with pytest.raises(ArchscaleInputError, match="no room"):
        Arch.from_budget(
            1e6, hidden_size_factor=0.2, mlp_attn_ratio=1.0, gqa_group=8, d_head=128, n_layer=16, vocab=100
        )
    with pytest.raises(ArchscaleInputError, match="positive"):
        Arch.from_budget(-1, hidden_size_factor=0.1, mlp_attn_ratio=1.0, gqa_group=1, d_head=64, n_layer=2, vocab=10)


def test_arch_batch_reports_the_same_numbers_as_arch():
    archs = list(PRESETS.values())
    batch = ArchBatch.from_archs(archs)
    assert list(batch.n_params_non_embedding) == [a.n_params_non_embedding for a in archs]
    assert list(batch.n_params_total) == [a.n_params_total for a in archs]
    assert list(batch.kv_bytes_per_token) == [a.kv_bytes_per_token for a in archs]
    assert batch.mlp_attn_ratio == pytest.approx([a.mlp_attn_ratio for a in archs])
    assert batch.arch(2, name="qwen2.5-1.5b") == PRESETS["qwen2.5-1.5b"]


def test_param_breakdown_lists_each_part():
    text = PRESETS["llama-3.2-1b"].param_breakdown()
    for part in ("attention", "MLP", "norms", "non-embedding N", "embeddings (tied)", "total", "1,235,814,400"):
        assert part in text


@pytest.mark.parametrize(
    ("name", "d", "hq", "hkv", "dh", "dff", "r_expected", "gqa"),
    [
        ("small-base", 768, 12, 4, 64, 1920, 2.81, 3),
        ("small-wide", 1024, 16, 4, 64, 1152, 1.35, 4),
        ("small-narrow", 512, 8, 2, 64, 3328, 7.80, 4),
        ("small-mha", 768, 12, 12, 64, 1536, 1.50, 1),
        ("small-kv3", 768, 15, 3, 64, 1792, 2.33, 5),
        ("small-gqa6", 640, 12, 2, 64, 2560, 4.29, 6),
    ],
)
def test_small_cpu_presets_vary_d_r_and_gqa_at_about_48m(name, d, hq, hkv, dh, dff, r_expected, gqa):
    arch = PRESETS[name]
    assert (arch.d_model, arch.n_head, arch.n_kv_head, arch.d_head, arch.d_ff) == (d, hq, hkv, dh, dff)
    per_layer = attention(d, hq, hkv, dh) + 3 * d * dff + 2 * d  # + two RMSNorm gains
    assert arch.n_params_non_embedding == 8 * per_layer + d  # + the final norm
    assert 46e6 <= arch.n_params_non_embedding <= 50e6
    assert arch.mlp_attn_ratio == pytest.approx(r_expected, abs=0.01) and arch.gqa_group == gqa
    assert arch.n_params_total == arch.n_params_non_embedding + 32000 * d  # tied embeddings
