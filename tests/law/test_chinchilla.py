"""Chinchilla fit: recovers known coefficients, reproduces the Epoch replication, fails clearly when degenerate."""

import numpy as np
import pytest

from law.chinchilla import ChinchillaLaw, _objective, fit_chinchilla
from perfmodel.errors import ArchscaleInputError


def test_recovers_known_coefficients_from_noisy_synthetic_data():
    true = ChinchillaLaw(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.3)
    rng = np.random.default_rng(1)
    N = 10 ** rng.uniform(7, 10, 400)
    D = N * 10 ** rng.uniform(0, 2.5, 400)
    loss = true.predict(N, D) * np.exp(rng.normal(0, 0.002, 400))
    law = fit_chinchilla(N, D, loss).law
    assert law.E == pytest.approx(1.7, rel=0.02)
    assert law.alpha == pytest.approx(0.33, abs=0.02)
    assert law.beta == pytest.approx(0.3, abs=0.02)
    assert law.predict(1e9, 2e10) == pytest.approx(true.predict(1e9, 2e10), rel=1e-3)


def test_epoch_data_matches_the_published_replication(epoch_fit):
    """Besiroglu et al. 2024 (arXiv 2404.10102), Table 1 / PROVENANCE.md: E 1.82, A 482.01, B 2085.43,
    alpha 0.3478, beta 0.3658 on the 240 kept points."""
    law = epoch_fit.law
    assert epoch_fit.n_points == 240
    assert law.E == pytest.approx(1.82, abs=0.005)  # their rounding
    # alpha and beta agree to about 1e-3: on this CSV our optimum has a strictly lower Huber objective than
    # the published parameters (checked below), so the last digits differ by optimizer and data rounding.
    assert law.alpha == pytest.approx(0.3478, abs=1e-3)
    assert law.beta == pytest.approx(0.3658, abs=2e-3)
    assert law.A == pytest.approx(482.01, rel=0.02)
    assert law.B == pytest.approx(2085.43, rel=0.05)


def test_our_epoch_optimum_is_at_least_as_good_as_the_published_one(epoch_columns, epoch_fit):
    logs = [np.log(epoch_columns[c]) for c in ("N", "D", "loss")]
    published = np.array([np.log(1.82), np.log(482.01), np.log(2085.43), 0.3478, 0.3658])
    assert epoch_fit.huber_objective <= _objective(published, *logs, 1e-3)[0]


def test_bootstrap_intervals_cover_the_estimate(epoch_columns):
    fit = fit_chinchilla(epoch_columns["N"], epoch_columns["D"], epoch_columns["loss"], bootstrap=8, n_starts=5)
    for name, (lo, hi) in fit.confidence_intervals.items():
        assert lo <= getattr(fit.law, name) <= hi or np.isclose(lo, hi)
    assert "95% CI" in fit.report()


@pytest.mark.parametrize(
    ("N", "D", "message"),
    [
        ([1e8], [1e9], "at least 5 points"),
        ([1e8] * 6, [1e9, 2e9, 3e9, 4e9, 5e9, 6e9], "2 distinct model sizes"),
    ],
)
def test_degenerate_inputs_fail_clearly(N, D, message):
    with pytest.raises(ArchscaleInputError, match=message):
        fit_chinchilla(N, D, [3.0] * len(N))
