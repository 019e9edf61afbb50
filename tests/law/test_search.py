"""The constrained search: finds a known optimum, returns only realizable candidates that meet the target,
and its outputs (JSON, config.json) are usable."""

import json

import numpy as np
import pytest

from harness.cli import main
from law.chinchilla import ChinchillaLaw
from law.conditional import ConditionalLaw, paper_law
from law.search import Deployment, SearchSpace, enumerate_candidates, pareto_front, search
from perfmodel import PRESETS, Arch, get_gpu

LOPT = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.34, beta=0.36)
H200_128 = Deployment(get_gpu("h200"), "torch", batch_size=128, input_len=4096, output_len=1024)
LLAMA_1B = PRESETS["llama-3.2-1b"]


def test_search_finds_the_optimum_of_a_synthetic_law():
    law = ConditionalLaw("multiplicative", a0=1.0, a1=0.05, a2=0.006, b0=1.0, b1=0.02, b2=0.04, lopt=LOPT)
    assert (law.x_opt, law.r_opt) == pytest.approx((0.12, 2.0))
    result = search(LLAMA_1B, law, H200_128)
    c = result.candidates
    panda = result.panda_index
    assert c.predicted_loss[panda] == np.nanmin(c.predicted_loss[c.feasible])
    assert c.hidden_size_factor[panda] == pytest.approx(0.12, rel=0.05)
    assert c.mlp_attn_ratio[panda] == pytest.approx(2.0, rel=0.1)


def test_every_candidate_is_realizable_and_within_budget():
    space = SearchSpace()
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
    assert c.output_tokens_per_s[s] >= result.baseline_tokens_per_s
    meets = c.feasible & (c.predicted_loss <= result.loss_target)
    assert c.output_tokens_per_s[s] == np.max(c.output_tokens_per_s[meets])
    arch = c.arch(s)
    assert arch.n_head % arch.n_kv_head == 0


def test_paper_law_reproduces_a_panda_like_architecture():
    """arXiv 2510.18245: Panda-1B has d = 2560 and r ~ 1.07 at LLaMA-3.2-1B's budget (x* = 0.080, r* = 1.032)."""
    result = search(LLAMA_1B, paper_law(lopt=LOPT), H200_128)
    panda = result.candidates.arch(result.panda_index)
    assert 2368 <= panda.d_model <= 2688
    assert 0.9 <= panda.mlp_attn_ratio <= 1.2


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
            "--save", str(tmp_path / "search.json")]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    for role in ("baseline", "panda", "surefire"):
        row = payload[role]
        assert {"output_tokens_per_s", "ttft_s", "tpot_s", "decode_bound", "calibrated", "predicted_loss",
                "d_model", "n_head", "n_kv_head", "d_ff", "mlp_attn_ratio", "gqa_group"} <= set(row)  # fmt: skip
    assert payload["surefire"]["predicted_loss"] <= payload["loss_target"]
    assert len(payload["frontier"]) >= 2
    assert set(payload["frontier"][0]) == set(payload["panda"])  # frontier rows carry the same keys
    for role in ("panda", "surefire"):
        emitted = Arch.from_hf_config(tmp_path / "cfg" / f"{role}-llama-3.2-1b" / "config.json")
        assert (emitted.d_model, emitted.n_head, emitted.d_ff) == tuple(
            payload[role][k] for k in ("d_model", "n_head", "d_ff")
        )
    assert (tmp_path / "s.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["kind"] == "prediction" and "git_sha" in saved["metadata"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--loss-target", "1.0"], "no candidate reaches predicted loss <= 1.0000"),
        (["--loss-target", "-3"], "positive loss"),
        (["--gpu", "h300"], "unknown GPU"),
        (["--law", "missing-law.json"], "no such law file"),
        (["--budget-tolerance", "1.5"], "budget tolerance must be a fraction"),
        (["--gqa", "64", "--min-kv-heads", "64"], "no GQA group leaves room"),
    ],
)
def test_impossible_or_bad_search_input_is_one_line_exit_2(capsys, extra, message):
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_search_with_a_fitted_law_file(capsys, tmp_path):
    law = ConditionalLaw("additive", a0=0.3, a1=0.25, a2=0.025, b0=0.0, b1=0.02, b2=0.03, lopt=LOPT)
    law.save(tmp_path / "law.json")
    argv = ["search", "--baseline", "qwen3-0.6b", "--gpu", "a100-80gb", "--law", str(tmp_path / "law.json"),
            "--gqa", "1,2,4", "--d-multiple", "128", "--json"]  # fmt: skip
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["r_opt"] == pytest.approx(1.5) and payload["panda"]["gqa_group"] in (1, 2, 4)
    assert all(row["d_model"] % 128 == 0 for row in payload["frontier"])
