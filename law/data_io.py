"""CSV loading for the fits: columns found by name (with aliases), values checked, one clear error otherwise.

Accepted column names (first match wins):
  N     n_params_nonembed, n_params, N             (parameters; non-embedding for the conditional law)
  D     n_tokens, D                                (training tokens)
  loss  loss
  d     d_model, d                                 (hidden size)
  r     mlp_attn_ratio_r, mlp_attn_ratio, r        (MLP params / attention params)
  group size_group, group                          (model-size label for progressive extrapolation)
Rows whose `epoch_excluded_outlier` column is True are dropped unless asked otherwise (as in Besiroglu et al.).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from perfmodel.errors import ArchscaleInputError

ALIASES = {
    "N": ("n_params_nonembed", "n_params", "N"),
    "D": ("n_tokens", "D"),
    "loss": ("loss",),
    "d": ("d_model", "d"),
    "r": ("mlp_attn_ratio_r", "mlp_attn_ratio", "r"),
    "group": ("size_group", "group"),
}
CHINCHILLA_ALIASES = {**ALIASES, "N": ("n_params", "N", "n_params_nonembed")}  # total params for Chinchilla
POSITIVE = ("N", "D", "loss", "d", "r")


def load_columns(
    path: str | Path, wanted: tuple[str, ...], *, optional: tuple[str, ...] = (), aliases: dict = ALIASES,
    drop_outliers: bool = True,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The `wanted` (and any present `optional`) columns of a CSV, as arrays keyed by canonical name."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise ArchscaleInputError(f"{path}: no such data file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ArchscaleInputError(f"{path}: cannot read CSV ({exc})") from None
    short = next((number for number, row in enumerate(rows, 1) if None in row.values()), None)
    if short is not None:
        raise ArchscaleInputError(f"{path}: data row {short} has fewer fields than the header ({len(header)})")
    if drop_outliers and "epoch_excluded_outlier" in header:
        rows = [row for row in rows if row["epoch_excluded_outlier"].strip().lower() != "true"]
    columns: dict[str, np.ndarray] = {}
    for name in wanted + optional:
        found = next((alias for alias in aliases[name] if alias in header), None)
        if found is None:
            if name in optional:
                continue
            raise ArchscaleInputError(
                f"{path}: missing column for {name} (accepted names: {', '.join(aliases[name])}; "
                f"the file has: {', '.join(header) or 'no header'})"
            )
        if name == "group":
            columns[name] = np.array([row[found] for row in rows])
            continue
        try:
            values = np.array([float(row[found]) for row in rows])
        except (TypeError, ValueError):
            raise ArchscaleInputError(f"{path}: column '{found}' has a non-numeric value") from None
        if np.isnan(values).any():
            raise ArchscaleInputError(f"{path}: column '{found}' has NaN values")
        if np.isinf(values).any():
            raise ArchscaleInputError(f"{path}: column '{found}' has infinite values")
        if name in POSITIVE and (values <= 0).any():
            raise ArchscaleInputError(f"{path}: column '{found}' must be positive everywhere")
        columns[name] = values
    if not rows:
        raise ArchscaleInputError(f"{path}: no data rows")
    return columns
