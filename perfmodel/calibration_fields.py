"""The value rules of a calibration's fields (perfmodel/calibration.py's `Calibration`): which are flags, measured
arrays, efficiencies, token counts, and `check_field_values`. Shared by calibration files and the engine release
table (perfmodel/engine_releases.py), which sets a subset of the same fields."""

from __future__ import annotations

import math

from perfmodel.errors import ArchscaleInputError
from perfmodel.gemm_shapes import SHAPE_FIELDS

BOOLEAN_FIELDS = ("calibrated", "chunked_prefill", "paged_kv_admission")
CURVE_FIELDS = ("gemm_curve_rows", "gemm_curve_factors")  # arrays, checked together (`_check_gemm_curve`)
ARRAY_FIELDS = (*CURVE_FIELDS, *SHAPE_FIELDS)  # the probe's measured arrays, checked apart from the numbers
EFFICIENCY_FIELDS = ("compute_efficiency", "memory_efficiency", "gpu_memory_utilization", "gemv_memory_efficiency",
                     "attention_prefill_compute_efficiency", "attention_decode_memory_efficiency",
                     "elementwise_memory_efficiency", "interconnect_efficiency")  # fmt: skip


def check_field_values(fields: dict, where: str, names) -> None:
    """The values of the fields among `names` that `fields` holds (any subset; the measured arrays apart): flags true
    or false, numbers finite and non-negative, efficiencies in (0, 1], token counts at least 1."""
    for flag in BOOLEAN_FIELDS:
        if flag in fields and not isinstance(fields[flag], bool):
            raise ArchscaleInputError(f"{where}.{flag} must be true or false, got {fields[flag]!r}")
    for name in names:
        if name in BOOLEAN_FIELDS or name in ARRAY_FIELDS or name not in fields:
            continue
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ArchscaleInputError(f"{where}.{name} must be a non-negative number, got {value!r}")
    for name in EFFICIENCY_FIELDS:
        if name in fields and not 0 < fields[name] <= 1:
            raise ArchscaleInputError(f"{where}.{name} must be in (0, 1], got {fields[name]!r}")
    for name in ("max_prefill_tokens", "kv_block_tokens"):
        if name in fields and fields[name] < 1:
            raise ArchscaleInputError(f"{where}.{name} must be at least 1, got {fields[name]!r}")
