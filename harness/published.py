"""Published vLLM/SGLang offline throughputs (perfmodel/data/published_throughput.csv) against the perfmodel.

Each row is predicted with its engine's default priors and limits for its GPU (perfmodel/data/calibration.toml):
the model as a preset, `num_prompts` requests of exactly `input_len` + `output_len` tokens, bf16, TP as published.
error = 100·(predicted / published − 1) of output tokens/s. The rows' caveats (versions, form factors, derived rates)
are in perfmodel/data/PUBLISHED_THROUGHPUT.md; nothing here is fitted to them.

    python -m harness.published          # the table, as in the README
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "perfmodel" / "data" / "published_throughput.csv"
# Hub model id -> preset. Meta-Llama-3-8B has Llama-3.1-8B's shape (same config.json dimensions and vocabulary).
MODEL_PRESETS = {
    "meta-llama/Meta-Llama-3-8B": "llama-3.1-8b",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-3B-Instruct": "qwen2.5-3b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "Qwen/Qwen3-8B": "qwen3-8b",
}


@dataclass(frozen=True)
class PublishedPoint:
    engine: str
    gpu: str
    model: str
    input_len: int
    output_len: int
    num_prompts: int
    published_output_tokens_per_s: float
    predicted_output_tokens_per_s: float
    source_url: str
    notes: str

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_output_tokens_per_s / self.published_output_tokens_per_s - 1.0)


def read_rows(path: Path = DATA) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def predict_published(rows: list[dict]) -> list[PublishedPoint]:
    from perfmodel import PRESETS, get_gpu, predict

    points = []
    for row in rows:
        preset = MODEL_PRESETS.get(row["model"]) or MODEL_PRESETS.get(row["model"].removesuffix("-Instruct"))
        if preset is None:
            raise KeyError(f"no preset for {row['model']}: add it to MODEL_PRESETS (checked against its config.json)")
        workload = {key: int(row[key]) for key in ("input_len", "output_len")}
        prediction = predict(PRESETS[preset], get_gpu(row["gpu"]), batch_size=int(row["num_prompts"]),
                             engine=row["engine"], tp=int(row["tp"]), **workload)  # fmt: skip
        points.append(PublishedPoint(row["engine"], row["gpu"], row["model"], workload["input_len"],
                                     workload["output_len"], int(row["num_prompts"]),
                                     float(row["output_tokens_per_s"]), prediction.output_tokens_per_s,
                                     row["source_url"], row["notes"]))  # fmt: skip
    return points


def markdown_table(points: list[PublishedPoint]) -> str:
    import numpy as np

    lines = ["| engine | GPU | model | in / out | prompts | published out tok/s | predicted | error |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in points:
        lines.append(f"| {p.engine} | {p.gpu} | [{p.model}]({p.source_url}) | {p.input_len} / {p.output_len} | "
                     f"{p.num_prompts} | {p.published_output_tokens_per_s:,.1f} | "
                     f"{p.predicted_output_tokens_per_s:,.1f} | {p.error_pct:+.1f}% |")  # fmt: skip
    for engine in sorted({p.engine for p in points}):
        errors = np.abs([p.error_pct for p in points if p.engine == engine])
        lines.append(f"\n{engine}: {errors.size} rows, median |error| {np.median(errors):.1f}%, max "
                     f"{errors.max():.1f}%")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(predict_published(read_rows())))
