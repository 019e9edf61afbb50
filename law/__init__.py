"""law: the loss side — Chinchilla and the conditional scaling law in d/sqrt(N) and r, their fits and evaluation.

numpy + scipy (scipy imported where a fit runs). `law.search` joins a law with perfmodel's throughput model.
"""

from functools import cache
from pathlib import Path

from law.chinchilla import ChinchillaFit, ChinchillaLaw, fit_chinchilla
from law.conditional import ConditionalFit, ConditionalLaw, fit_conditional, paper_law

EPOCH_DATA_PATH = Path(__file__).with_name("data") / "chinchilla_epoch.csv"


@cache
def default_chinchilla() -> ChinchillaLaw:
    """A Chinchilla law fitted on the Epoch AI replication data shipped in law/data (outliers dropped)."""
    from law.data_io import CHINCHILLA_ALIASES, load_columns

    columns = load_columns(EPOCH_DATA_PATH, ("N", "D", "loss"), aliases=CHINCHILLA_ALIASES)
    return fit_chinchilla(columns["N"], columns["D"], columns["loss"], n_starts=10).law


__all__ = [
    "EPOCH_DATA_PATH",
    "ChinchillaFit",
    "ChinchillaLaw",
    "ConditionalFit",
    "ConditionalLaw",
    "default_chinchilla",
    "fit_chinchilla",
    "fit_conditional",
    "paper_law",
]
