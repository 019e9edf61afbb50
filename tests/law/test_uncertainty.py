"""The law's uncertainty and how the search uses it: the fit's covariance gives a standard error per predicted loss
(delta method) that matches the spread of refits on fresh noise; a search with such a law ties losses within one
standard error; without a covariance the tolerance is the extrapolation error `fit evaluate` measures on the morph
data; the paper's architectures can be placed against a search; Spearman per (size, token budget) group."""

import json

import numpy as np
import pytest

from harness.cli.main import main
from law.chinchilla import ChinchillaLaw
from law.conditional import COEFFICIENTS, ConditionalLaw, fit_conditional, paper_law
from law.data_io import load_columns
from law.evaluate import extrapolation_rmse, progressive_extrapolation, spearman, spearman_per_group
from law.placement import place
from law.search import DEFAULT_LOSS_TOLERANCE, Deployment, search
from perfmodel import PRESETS, get_gpu

LOPT = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.34, beta=0.36)
TRUE = ConditionalLaw("multiplicative", a0=1.04, a1=0.0377, a2=0.003, b0=1.0, b1=0.016, b2=0.017, lopt=LOPT)
H200_128 = Deployment(get_gpu("h200"), "torch", batch_size=128, input_len=4096, output_len=1024)
LLAMA_1B = PRESETS["llama-3.2-1b"]
NOISE = 0.01


def noisy_fit(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7.5, 9.5, n)
    D = 20 * N * rng.choice([1, 2, 8], n)
    x, r = rng.uniform(0.03, 0.2, n), np.exp(rng.uniform(np.log(0.3), np.log(6), n))
    d = x * np.sqrt(N)
    return fit_conditional(N, D, d, r, TRUE.predict_loss(N, D, d, r) + rng.normal(0, NOISE, n), lopt=LOPT)


def test_delta_method_gradient_matches_finite_differences():
    law = ConditionalLaw("multiplicative", 1.04, 0.0377, 0.003, 0.9, 0.016, 0.017, lopt=LOPT,
                         covariance=tuple(tuple(float(i == j) for j in range(6)) for i in range(6)))  # fmt: skip
    N, D, d, r = np.array([1e9, 3e8]), np.array([2e10, 6e9]), np.array([2048.0, 1024.0]), np.array([4.8, 0.7])
    for form in ("multiplicative", "additive"):
        law = ConditionalLaw(form, *(getattr(law, c) for c in COEFFICIENTS), lopt=LOPT, covariance=law.covariance)
        gradient = law.coefficient_gradient(d / np.sqrt(N), r, LOPT.predict(N, D))
        for k, name in enumerate(COEFFICIENTS):
            shifted = ConditionalLaw(form, **{c: getattr(law, c) + 1e-6 * (c == name) for c in COEFFICIENTS},
                                     lopt=LOPT)  # fmt: skip
            numeric = (shifted.predict_loss(N, D, d, r) - law.predict_loss(N, D, d, r)) / 1e-6
            assert gradient[:, k] == pytest.approx(numeric, rel=1e-4, abs=1e-7)
        # Identity covariance: the standard error is the gradient's norm.
        _, stderr = law.predict_loss(N, D, d, r, return_stderr=True)
        assert stderr == pytest.approx(np.linalg.norm(gradient, axis=1))


def test_standard_error_matches_the_spread_of_refits_on_fresh_noise():
    point = (1e9, 2e10, 2500.0, 1.2)  # N, D, d, r: a 1B candidate near the optimum
    fits = [noisy_fit(seed) for seed in range(30)]
    predictions = [f.law.predict_loss(*point) for f in fits]
    stderr = np.median([f.law.predict_loss(*point, return_stderr=True)[1] for f in fits])
    assert 0.6 < np.std(predictions) / stderr < 1.6
    assert paper_law(lopt=LOPT).predict_loss(*point, return_stderr=True)[1] is None  # no covariance published


def test_covariance_survives_save_and_load(tmp_path):
    law = noisy_fit(0).law
    law.save(tmp_path / "law.json")
    loaded = ConditionalLaw.load(tmp_path / "law.json")
    assert np.allclose(loaded.covariance, law.covariance)
    assert loaded.predict_loss(1e9, 2e10, 2048, 4.8, return_stderr=True)[1] == pytest.approx(
        law.predict_loss(1e9, 2e10, 2048, 4.8, return_stderr=True)[1]
    )


def test_search_with_a_fitted_law_ties_within_one_standard_error(capsys, tmp_path):
    law = noisy_fit(1).law
    result = search(LLAMA_1B, law, H200_128)
    c = result.candidates
    best = np.flatnonzero(c.feasible)[np.argmin(c.predicted_loss[c.feasible])]
    assert result.loss_tolerance == pytest.approx(c.loss_stderr[best]) and "covariance" in result.loss_tolerance_source
    assert np.all(c.predicted_loss[result.tie_indices] <= result.min_loss + result.loss_tolerance)
    law.save(tmp_path / "law.json")
    argv = ["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--law", str(tmp_path / "law.json"),
            "--save", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    assert "± se" in capsys.readouterr().out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert all(saved[role]["predicted_loss_stderr"] > 0 for role in ("baseline", "panda", "surefire"))
    assert saved["surefire_gqa"] is None  # GQA held


def test_default_tolerance_is_the_extrapolation_rmse_fit_evaluate_measures(morph_path):
    steps = progressive_extrapolation(load_columns(morph_path, ("N", "D", "d", "r", "loss", "group")))
    assert [s.test_group for s in steps[-3:]] == ["313M", "339M", "1B"]
    assert extrapolation_rmse(steps) == pytest.approx(DEFAULT_LOSS_TOLERANCE, abs=5e-5)


def test_fit_evaluate_reports_both_spearmans_and_the_tolerance(capsys, morph_path):
    assert main(["fit", "evaluate", str(morph_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["rmse_last_steps"] == pytest.approx(DEFAULT_LOSS_TOLERANCE, abs=5e-5)
    step_164m = next(s for s in payload["steps"] if s["test_group"] == "164M")  # 13 points at 3 token budgets
    assert step_164m["n_spearman_groups"] == 3 and step_164m["spearman_per_group"] == pytest.approx(1.0)
    assert all(s["rmse"] == pytest.approx(np.sqrt(s["mse"])) for s in payload["steps"])
    assert main(["fit", "evaluate", str(morph_path)]) == 0
    assert "per (N, D)" in capsys.readouterr().out


def test_spearman_per_group_scores_architectures_not_token_budgets():
    # Two token budgets; the prediction orders the budgets right but every architecture inside them backwards.
    tokens = np.repeat([1e10, 4e10], 4)
    measured = np.array([3.10, 3.11, 3.12, 3.13, 3.00, 3.01, 3.02, 3.03])
    predicted = np.array([3.13, 3.12, 3.11, 3.10, 3.03, 3.02, 3.01, 3.00])
    assert spearman(predicted, measured) > 0.5
    assert spearman_per_group(predicted, measured, tokens) == (pytest.approx(-1.0), 2)


def test_the_papers_architectures_can_be_placed_against_a_search(capsys):
    law = paper_law(lopt=LOPT)
    result = search(LLAMA_1B, law, H200_128)
    panda_1b, surefire_1b, baseline = place(result, law, H200_128, [PRESETS[n] for n in ("panda-1b", "surefire-1b",
                                                                                    "llama-3.2-1b")])  # fmt: skip
    assert panda_1b["within_tolerance"] and panda_1b["loss_rank_held_gqa"] <= 10  # near the law's optimum
    assert baseline["loss_rank_held_gqa"] > panda_1b["loss_rank_held_gqa"]
    assert baseline["output_tokens_per_s"] == pytest.approx(result.baseline_tokens_per_s)
    assert surefire_1b["gqa_group"] == 9 and surefire_1b["meets_loss_target"]
    assert main(["search", "--baseline", "llama-3.2-1b", "--gpu", "h200", "--place", "panda-1b,surefire-1b"]) == 0
    assert "Placed architectures" in capsys.readouterr().out
