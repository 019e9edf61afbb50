"""The published vLLM/SGLang throughputs (perfmodel/data/published_throughput.csv): every row names a known GPU and
engine, fixed lengths, a measured rate and the public source it was copied from."""

import csv
from pathlib import Path

import pytest

from perfmodel import get_gpu

DATA = Path(__file__).resolve().parents[2] / "perfmodel" / "data" / "published_throughput.csv"


def rows():
    with DATA.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_file_has_rows_with_provenance():
    assert len(rows()) >= 10
    assert (DATA.parent / "PUBLISHED_THROUGHPUT.md").is_file()


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['engine']}-{r['gpu']}-{r['model']}-{r['input_len']}")
def test_every_row_is_checkable(row):
    assert row["engine"] in ("vllm", "sglang")
    get_gpu(row["gpu"])  # a GPU the perfmodel knows
    for key in ("tp", "input_len", "output_len", "num_prompts"):
        assert int(row[key]) >= 1, key
    assert float(row["output_tokens_per_s"]) > 0
    assert row["source_url"].startswith("https://") and row["source_quote"].strip()
    assert row["derived"].strip()  # says what was computed, or "none"
