"""Benchmark (`make bench`): the scaling-law fits as `archscale fit` runs them — Chinchilla on the Epoch data shipped
in law/data (grid + 40 L-BFGS starts), and the conditional law (both forms, Levenberg–Marquardt) on the shared
morph_dataset.csv (skipped if ../shared is absent) with its L_opt fitted once outside the timed region."""

from pathlib import Path

import pytest

from law import EPOCH_DATA_PATH
from law.chinchilla import fit_chinchilla
from law.conditional import fit_conditional
from law.data_io import CHINCHILLA_ALIASES, load_columns

MORPH_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "morph_dataset.csv"


def test_chinchilla_fit_on_epoch_data(benchmark):
    columns = load_columns(EPOCH_DATA_PATH, ("N", "D", "loss"), aliases=CHINCHILLA_ALIASES)
    fit = benchmark.pedantic(fit_chinchilla, args=(columns["N"], columns["D"], columns["loss"]), rounds=10,
                             iterations=1, warmup_rounds=1)  # fmt: skip
    assert fit.law.E == pytest.approx(1.817, abs=0.01)  # the README's fit
    benchmark.extra_info["n_points"] = fit.n_points


@pytest.fixture(scope="module")
def morph():
    """The morph data's columns and its L_opt, fitted as `archscale fit conditional` fits it."""
    if not MORPH_PATH.exists():
        pytest.skip(f"shared data not found at {MORPH_PATH}")
    columns = load_columns(MORPH_PATH, ("N", "D", "d", "r", "loss"))
    return columns, fit_chinchilla(columns["N"], columns["D"], columns["loss"], n_starts=10).law


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_conditional_fit_on_morph_data(benchmark, morph, form):
    columns, lopt = morph
    fit = benchmark(fit_conditional, *(columns[c] for c in ("N", "D", "d", "r", "loss")), form=form, lopt=lopt)
    assert fit.law.x_is_u_shaped
    benchmark.extra_info["n_points"] = fit.n_points
