"""Shared data for the law tests: the shipped Epoch data, the shared morph data (skipped if absent)."""

from pathlib import Path

import pytest

from law import EPOCH_DATA_PATH
from law.chinchilla import fit_chinchilla
from law.data_io import CHINCHILLA_ALIASES, load_columns

MORPH_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "morph_dataset.csv"


@pytest.fixture(scope="session")
def epoch_columns():
    return load_columns(EPOCH_DATA_PATH, ("N", "D", "loss"), aliases=CHINCHILLA_ALIASES)


@pytest.fixture(scope="session")
def epoch_fit(epoch_columns):
    return fit_chinchilla(epoch_columns["N"], epoch_columns["D"], epoch_columns["loss"])


@pytest.fixture(scope="session")
def morph_path():
    if not MORPH_PATH.exists():
        pytest.skip(f"shared data not found at {MORPH_PATH}")
    return MORPH_PATH
