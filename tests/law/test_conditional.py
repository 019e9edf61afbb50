"""Conditional law: both forms recover known coefficients (r factor included), optima, JSON round trip, and the
paper's coefficients give the paper's optimum."""

import numpy as np
import pytest

from law.chinchilla import ChinchillaLaw
from law.conditional import ConditionalLaw, fit_conditional, paper_law
from perfmodel.errors import ArchscaleInputError

LOPT = ChinchillaLaw(E=1.8, A=480.0, B=2000.0, alpha=0.34, beta=0.36)


def synthetic(law, n=300, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    N = 10 ** rng.uniform(7.5, 9.5, n)
    D = 20 * N * rng.choice([1, 2, 8], n)
    x = rng.uniform(0.03, 0.2, n)
    r = np.exp(rng.uniform(np.log(0.3), np.log(6), n))
    d = x * np.sqrt(N)
    return N, D, d, r, law.predict_loss(N, D, d, r) + rng.normal(0, noise, n)


def test_paper_coefficients_give_the_papers_optimum():
    law = paper_law()  # arXiv 2510.18245 Section 4: x* = 0.080, r* = 1.032 (Panda-1B)
    assert law.x_opt == pytest.approx(0.080, abs=5e-4)
    assert law.r_opt == pytest.approx(1.032, abs=5e-4)
    assert paper_law("fit_1B_variants").x_opt == pytest.approx(0.074, abs=1e-3)


def test_multiplicative_fit_recovers_coefficients_and_optima():
    # The paper's coefficients with the scale moved into the x factor (b0 = 1): the same law.
    paper = paper_law()
    true = ConditionalLaw("multiplicative", paper.a0 * paper.b0, paper.a1 * paper.b0, paper.a2 * paper.b0, 1.0,
                          paper.b1 / paper.b0, paper.b2 / paper.b0, lopt=LOPT)  # fmt: skip
    N, D, d, r, loss = synthetic(true)
    fit = fit_conditional(N, D, d, r, loss, form="multiplicative", lopt=LOPT)
    for name in ("a0", "a1", "a2", "b1", "b2"):
        assert getattr(fit.law, name) == pytest.approx(getattr(true, name), abs=4 * fit.stderr[name] + 1e-9)
    assert fit.law.x_opt == pytest.approx(0.080, rel=0.03)
    assert fit.law.r_opt == pytest.approx(1.032, rel=0.05)
    assert fit.r_identifiable and fit.mse < 1e-5


def test_additive_fit_recovers_coefficients():
    true = ConditionalLaw("additive", a0=0.3, a1=0.25, a2=0.025, b0=0.0, b1=0.02, b2=0.03, lopt=LOPT)
    N, D, d, r, loss = synthetic(true, seed=3)
    fit = fit_conditional(N, D, d, r, loss, form="additive", lopt=LOPT)
    for name in ("a0", "a1", "a2", "b1", "b2"):
        assert getattr(fit.law, name) == pytest.approx(getattr(true, name), abs=4 * fit.stderr[name] + 1e-9)
    assert fit.law.r_opt == pytest.approx(1.5, rel=0.05)


def test_constant_r_holds_the_r_factor_fixed_instead_of_inventing_it():
    true = ConditionalLaw("multiplicative", 1.04, 0.0377, 0.003, 1.0, 0.016, 0.017, lopt=LOPT)
    N, D, d, r, loss = synthetic(true)
    fit = fit_conditional(N, D, d, np.full_like(r, 2.0), loss, form="multiplicative", lopt=LOPT)
    assert not fit.r_identifiable and fit.law.r_opt is None
    assert fit.law.b1 == 0 and fit.law.b2 == 0 and "not identifiable" in fit.report()


def test_monotone_factor_has_no_optimum():
    law = ConditionalLaw("multiplicative", 1.0, -0.01, 0.003, 1.0, 0.01, 0.01)
    assert law.x_opt is None and not law.x_is_u_shaped and law.r_opt == pytest.approx(1.0)


def test_predict_loss_is_vectorized_and_matches_the_formula():
    law = paper_law(lopt=LOPT)
    N, D, d, r = np.array([1e9, 2e9]), np.array([2e10, 4e10]), np.array([2048.0, 4096.0]), np.array([4.8, 1.0])
    x = d / np.sqrt(N)
    expected = (law.a0 + law.a1 * np.log(x) + law.a2 / x) * (law.b0 + law.b1 * np.log(r) + law.b2 / r)
    assert law.predict_loss(N, D, d, r) == pytest.approx(expected * LOPT.predict(N, D))


def test_save_and_load_round_trip(tmp_path):
    law = paper_law(lopt=LOPT)
    law.save(tmp_path / "law.json")
    loaded = ConditionalLaw.load(tmp_path / "law.json")
    assert loaded.lopt == LOPT and loaded.x_opt == law.x_opt
    assert loaded.predict_loss(1e9, 2e10, 2048, 4.8) == pytest.approx(law.predict_loss(1e9, 2e10, 2048, 4.8))


def test_corrupt_law_file_fails_clearly(tmp_path):
    (tmp_path / "law.json").write_text('{"form": "multiplicative", "a0": 1}')
    with pytest.raises(ArchscaleInputError, match="not a law saved"):
        ConditionalLaw.load(tmp_path / "law.json")


def test_too_few_distinct_shapes_fail_clearly():
    with pytest.raises(ArchscaleInputError, match="3 distinct values"):
        fit_conditional([1e8] * 8, [1e9] * 8, [512] * 8, [2.0] * 8, [3.0] * 8, lopt=LOPT)
