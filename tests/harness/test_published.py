"""The published vLLM/SGLang throughputs predicted row by row (harness/published.py)."""

import math

import pytest

from harness.published import MODEL_PRESETS, markdown_table, predict_published, read_rows
from perfmodel import PRESETS, get_gpu, predict


def test_every_published_row_is_predicted_with_its_engines_defaults():
    rows = read_rows()
    points = predict_published(rows)
    assert len(points) == len(rows)
    for row, point in zip(rows, points, strict=True):
        assert math.isfinite(point.predicted_output_tokens_per_s) and point.predicted_output_tokens_per_s > 0
        assert point.error_pct == pytest.approx(
            100 * (point.predicted_output_tokens_per_s / float(row["output_tokens_per_s"]) - 1)
        )
    first = rows[0]
    direct = predict(PRESETS[MODEL_PRESETS[first["model"]]], get_gpu(first["gpu"]), engine=first["engine"],
                     batch_size=int(first["num_prompts"]), input_len=int(first["input_len"]),
                     output_len=int(first["output_len"]))  # fmt: skip
    assert points[0].predicted_output_tokens_per_s == direct.output_tokens_per_s


def test_the_table_names_every_source_and_summarizes_each_engine():
    points = predict_published(read_rows())
    table = markdown_table(points)
    assert all(p.source_url in table for p in points)
    for engine in {p.engine for p in points}:
        assert f"{engine}: " in table and "median |error|" in table
