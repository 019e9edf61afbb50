"""The constrained search: returns only realizable candidates, meets the loss target, keeps the baseline's GQA
unless asked, treats losses within the law's error as ties (Panda = the tie nearest the law's optimum), and its
outputs (JSON, config.json) are usable."""

import json

import numpy as np
import pytest

from harness.cli.main import main
from law.chinchilla import ChinchillaLaw
from law.conditional import ConditionalLaw, paper_law
from law.search import Deployment, SearchSpace, enumerate_candidates, pareto_front, search
from perfmodel import PRESETS, Arch, get_gpu

LOPT = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.34, beta=0.36)
H200_128 = Deployment(get_gpu("h200"), "torch", batch_size=128, input_len=4096, output_len=1024)
LLAMA_1B = PRESETS["llama-3.2-1b"]
OPEN_GQA = SearchSpace(gqa_groups=(1, 2, 4, 8, 16))
# A synthetic law with a known optimum: x* = a2/a1 = 0.12, r* = b2/b1 = 2.0.
SYNTHETIC = ConditionalLaw("multiplicative", a0=1.0, a1=0.05, a2=0.006, b0=1.0, b1=0.02, b2=0.04, lopt=LOPT)


def distance_to(candidates, x_opt, r_opt):
    return np.hypot(np.log(candidates.hidden_size_factor / x_opt), np.log(candidates.mlp_attn_ratio / r_opt))


def test_panda_is_the_tie_nearest_the_known_optimum():
    noise = 0.01  # the law's known error: losses closer than this to the minimum are ties
    result = search(LLAMA_1B, SYNTHETIC, H200_128, loss_tolerance=noise)
    c, panda = result.candidates, result.panda_index
    distance = distance_to(c, 0.12, 2.0)
    assert c.predicted_loss[panda] <= result.min_loss + noise
    # The realizable point nearest the optimum, among all candidates (it is a tie, so it is Panda).
    assert panda == np.argmin(np.where(c.feasible, distance, np.inf))
    assert c.hidden_size_factor[panda] == pytest.approx(0.12, rel=0.05)
    assert c.mlp_attn_ratio[panda] == pytest.approx(2.0, rel=0.05)
    # The strict minimum is elsewhere: a candidate with ~1% more parameters wins by ~1e-3, far inside the noise.
    strict = search(LLAMA_1B, SYNTHETIC, H200_128, loss_tolerance=0.0)
    assert distance[strict.panda_index] > 2 * distance[panda]
    assert c.predicted_loss[panda] - c.predicted_loss[strict.panda_index] < noise


def test_tolerance_zero_gives_back_the_strict_minimum():
    result = search(LLAMA_1B, SYNTHETIC, H200_128, space=OPEN_GQA, loss_tolerance=0.0)
    c = result.candidates
    held = np.flatnonzero(c.feasible & (c.gqa_group == 4))
    # The old rule: lowest predicted loss, ties to the faster one (at the baseline's GQA).
    old = held[np.lexsort((-c.output_tokens_per_s[held], c.predicted_loss[held]))[0]]
    assert result.panda_index == old and list(result.tie_indices) == [old]


def test_gqa_is_held_by_default_and_opening_it_adds_a_second_surefire():
    held = search(LLAMA_1B, paper_law(lopt=LOPT), H200_128)
    assert np.all(held.candidates.gqa_group == LLAMA_1B.gqa_group) and held.surefire_gqa_index is None
    assert "keeps the baseline's GQA 4" in held.notes[0]
    opened = search(LLAMA_1B, paper_law(lopt=LOPT), H200_128, space=OPEN_GQA)
    c = opened.candidates
    assert set(np.unique(c.gqa_group)) == {1, 2, 4, 8, 16}
    assert c.gqa_group[opened.panda_index] == c.gqa_group[opened.surefire_index] == 4
    # Held and opened agree on what they share; the opened Surefire is at least as fast.
    assert c.arch(opened.surefire_index) == held.candidates.arch(held.surefire_index)
    assert c.output_tokens_per_s[opened.surefire_gqa_index] >= c.output_tokens_per_s[opened.surefire_index]
    assert "NOT modelled" in opened.notes[0]


def test_every_candidate_is_realizable_and_within_budget():
    space = OPEN_GQA
    archs = enumerate_candidates(LLAMA_1B, space)
    assert len(archs) > 1000
    assert np.all(archs.n_head % archs.n_kv_head == 0) and np.all(archs.n_kv_head >= space.min_kv_heads)
    assert np.all(archs.d_model % 64 == 0) and np.all(archs.d_ff % 64 == 0)
    assert np.all(np.abs(archs.n_params_non_embedding / LLAMA_1B.n_params_non_embedding - 1) <= 0.02)
    assert np.all((archs.mlp_attn_ratio >= 0.25) & (archs.mlp_attn_ratio <= 8))
    assert set(np.unique(archs.n_head // archs.n_kv_head)) <= set(space.gqa_groups)
    rows = np.stack([archs.d_model, archs.n_head, archs.n_kv_head, archs.d_ff], axis=1)
    assert len(np.unique(rows, axis=0)) == len(archs)  # no candidate listed twice
    # The baseline itself is one of the candidates, so Surefire can never be slower than it.
    assert ((rows == [2048, 32, 8, 8192]).all(axis=1)).any()


def test_surefire_meets_the_target_and_beats_the_baseline():
    result = search(LLAMA_1B, paper_law(lopt=LOPT), H200_128)
    c, s = result.candidates, result.surefire_index
    assert c.predicted_loss[s] <= result.loss_target == pytest.approx(result.baseline_loss)
    assert result.loss_target_rule == "delta" and result.loss_delta == 0.0
    assert c.output_tokens_per_s[s] >= result.baseline_tokens_per_s
    meets = c.feasible & (c.predicted_loss <= result.loss_target)
    assert c.output_tokens_per_s[s] == np.max(c.output_tokens_per_s[meets])


def test_paper_law_reproduces_a_panda_like_architecture():
    """arXiv 2510.18245: Panda-1B has d = 2560 and r ~ 1.07 at LLaMA-3.2-1B's budget (x* = 0.080, r* = 1.032)."""
    result = search(LLAMA_1B, paper_law(lopt=LOPT), H200_128)
    panda = result.candidates.arch(result.panda_index)
    assert 2368 <= panda.d_model <= 2688
    assert 0.9 <= panda.mlp_attn_ratio <= 1.2
    assert result.loss_tolerance == pytest.approx(0.0269) and "morph_dataset" in result.loss_tolerance_source


def test_a_baseline_whose_gqa_cannot_be_kept_at_some_d_gets_a_note(capsys, tmp_path):
    # GQA 16 with d_head 128 at 122M: from d = 1408 up, 2 KV heads (32 query heads) leave no room for the MLP.
    narrow = Arch(d_model=1024, n_layer=8, n_head=32, n_kv_head=2, d_head=128, d_ff=2048, vocab=32000)
    result = search(narrow, paper_law(lopt=LOPT), H200_128)
    assert np.all(result.candidates.gqa_group == 16) and result.candidates.archs.d_model.max() == 1344
    assert any("GQA 16 cannot be kept at 13 of 31 d_model values (1408..2176)" in note for note in result.notes)
    (tmp_path / "config.json").write_text(json.dumps(narrow.to_hf_config()))
    assert main(["search", "--baseline", str(tmp_path / "config.json"), "--gpu", "h200"]) == 0
    assert "GQA 16 cannot be kept" in capsys.readouterr().out


def test_pareto_front_is_exactly_the_non_dominated_set():
    rng = np.random.default_rng(0)
    loss, speed = rng.uniform(2, 3, 300), rng.uniform(1, 10, 300)
    front = set(pareto_front(loss, speed).tolist())
    dominated = {i for i in range(300) if np.any((loss <= loss[i]) & (speed >= speed[i]) &
                                                 ((loss < loss[i]) | (speed > speed[i])))}  # fmt: skip
    assert front == set(range(300)) - dominated


def test_search_cli_json_emitted_configs_round_trip(capsys, tmp_path):
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--batch-size", "128", "--input-len", "4096",
            "--output-len", "1024", "--json", "--emit-config", str(tmp_path / "cfg"), "--plot", str(tmp_path / "s.png"),
            "--gqa", "1,2,4,8,16", "--save", str(tmp_path / "search.json")]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    for role in ("baseline", "panda", "surefire", "surefire_gqa"):
        row = payload[role]
        assert {"output_tokens_per_s", "ttft_s", "tpot_s", "decode_bound", "calibrated", "predicted_loss",
                "predicted_loss_stderr", "d_model", "n_head", "n_kv_head", "d_ff", "mlp_attn_ratio",
                "gqa_group"} <= set(row)  # fmt: skip
    assert payload["surefire"]["predicted_loss"] <= payload["loss_target"]
    assert payload["surefire"]["gqa_group"] == payload["panda"]["gqa_group"] == payload["baseline_gqa"] == 4
    assert len(payload["frontier"]) >= 2
    assert set(payload["frontier"][0]) == set(payload["panda"])  # frontier rows carry the same keys
    for role in ("panda", "surefire", "surefire-gqa"):
        emitted = Arch.from_hf_config(tmp_path / "cfg" / f"{role}-llama-3.2-1b" / "config.json")
        assert (emitted.d_model, emitted.n_head, emitted.d_ff) == tuple(
            payload[role.replace("-", "_")][k] for k in ("d_model", "n_head", "d_ff")
        )
    assert (tmp_path / "s.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["kind"] == "prediction" and "git_sha" in saved["metadata"]
    assert saved["loss_target_rule"] == {"rule": "delta", "delta": 0.0}
    assert saved["loss_tolerance"] == pytest.approx(0.0269) and "fit evaluate" in saved["loss_tolerance_source"]
    assert saved["panda"]["predicted_loss_stderr"] is None  # the paper's coefficients have no covariance


def test_loss_delta_target_is_the_baselines_loss_plus_delta(capsys):
    # By hand: the paper's law (Section 4) x the Chinchilla fit on the shipped Epoch data, at D = 20 N.
    from law import default_chinchilla

    paper, lopt = paper_law(), default_chinchilla()
    N = LLAMA_1B.n_params_non_embedding
    x, r = 2048 / np.sqrt(N), LLAMA_1B.mlp_attn_ratio
    baseline_loss = ((paper.a0 + paper.a1 * np.log(x) + paper.a2 / x) * (paper.b0 + paper.b1 * np.log(r) + paper.b2 / r)
                     * (lopt.E + lopt.A / N**lopt.alpha + lopt.B / (20 * N) ** lopt.beta))  # fmt: skip
    assert main(["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-delta", "0.01", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["loss_target"] == pytest.approx(baseline_loss + 0.01, abs=1e-9)
    assert payload["loss_target_rule"] == {"rule": "delta", "delta": 0.01}
    assert payload["surefire"]["predicted_loss"] <= baseline_loss + 0.01
    assert main(["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-target", "2.6", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["loss_target"] == 2.6 and payload["loss_target_rule"] == {"rule": "absolute", "delta": None}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--loss-target", "1.0"], "no candidate at the baseline's GQA 4 reaches predicted loss <= 1.0000"),
        (["--loss-delta", "-1"], "Raise --loss-delta or --loss-target"),
        (["--loss-target", "-3"], "positive loss"),
        (["--loss-tolerance", "-0.1"], "--loss-tolerance must be >= 0"),
        (["--gpu", "h300"], "unknown GPU"),
        (["--law", "missing-law.json"], "no such law file"),
        (["--budget-tolerance", "1.5"], "budget tolerance must be a fraction"),
        (["--min-kv-heads", "4096"], "no GQA group leaves room"),
        (["--place", "no-such-model"], "no-such-model"),
        (["--hardware", "probe.toml"], "give either --gpu or --hardware, not both"),
    ],
)
def test_impossible_or_bad_search_input_is_one_line_exit_2(capsys, extra, message):
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_search_on_a_probed_machine_at_its_measured_dtype(capsys, tmp_path, write_probed_hardware):
    """A machine measured by `archscale probe` (a CPU probe has an fp32 peak only) is searched like a datasheet GPU
    with --hardware and --dtype float32: every row is predicted on that entry at 4 bytes, the baseline's figures are
    `predict`'s for the same point, and the emitted configs are float32."""
    hardware = str(write_probed_hardware(gemm_curve={1: 0.5, 16: 0.8, 256: 1.0}))
    point = ["--batch-size", "8", "--input-len", "256", "--output-len", "64"]
    argv = ["search", "--baseline", "small-base", "--hardware", hardware, "--dtype", "float32", *point, "--json",
            "--emit-config", str(tmp_path / "cfg")]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    deployment = payload["deployment"]
    assert (deployment["gpu"], deployment["hardware_measured"], deployment["dtype_bytes"]) == ("local-cpu", True, 4)
    rows = [payload["baseline"], payload["panda"], payload["surefire"], *payload["frontier"]]
    assert all((row["dtype_bytes"], row["gpu"], row["hardware_measured"]) == (4, "local-cpu", True) for row in rows)
    assert main(["predict", "small-base", "--hardware", hardware, "--dtype", "float32", *point, "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert payload["baseline"]["output_tokens_per_s"] == pytest.approx(predicted["output_tokens_per_s"], rel=1e-12)
    assert Arch.from_hf_config(tmp_path / "cfg" / "panda-small-base" / "config.json").dtype_bytes == 4
    # At the baseline's own bf16 the fp32-only entry has no peak: one line that names the fix.
    assert main(["search", "--baseline", "small-base", "--hardware", hardware, *point]) == 2
    err = capsys.readouterr().err
    assert "no bf16 peak" in err and "--dtype float32" in err and len(err.strip().splitlines()) == 1
    assert main(["search", "--baseline", "small-base", *point]) == 2  # no hardware named
    assert "--gpu NAME" in capsys.readouterr().err


def test_loss_delta_and_loss_target_together_are_refused(capsys):
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--loss-delta", "0", "--loss-target", "2.6"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_search_with_a_fitted_law_file(capsys, tmp_path):
    law = ConditionalLaw("additive", a0=0.3, a1=0.25, a2=0.025, b0=0.0, b1=0.02, b2=0.03, lopt=LOPT)
    law.save(tmp_path / "law.json")
    argv = ["search", "--baseline", "qwen3-0.6b", "--gpu", "a100-80gb", "--law", str(tmp_path / "law.json"),
            "--gqa", "1,2,4", "--d-multiple", "128", "--json"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["r_opt"] == pytest.approx(1.5) and payload["panda"]["gqa_group"] == 2  # qwen3-0.6b: 16/8
    assert all(row["d_model"] % 128 == 0 for row in payload["frontier"])
