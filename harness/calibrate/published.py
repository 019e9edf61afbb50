"""Published vLLM/SGLang offline throughputs (perfmodel/data/published_throughput.csv) against the perfmodel.

Each row is a point: the model as a preset, `num_prompts` requests of exactly `input_len` + `output_len` tokens,
bf16, TP as published, on its GPU with its engine's limits. It is predicted twice: with the engine's default
priors (perfmodel/data/calibration.toml: nothing fitted), and with the package's fit to these rows where there is
one (perfmodel/data/published_calibration.toml, which records the rows it trained on and the ones it held out).
error = 100·(predicted / published − 1) of output tokens/s. The rows' caveats (versions, form factors, derived
rates) are in perfmodel/data/PUBLISHED_THROUGHPUT.md.

`--sweep-rows DIR` writes the rows as sweep rows, one file per (engine, GPU), so that `archscale calibrate` fits
the engines' priors to them and `archscale compare` judges the fit (`make calibrate-published` does both). The rows
are a pure function of the CSV (no clock, no git SHA), so the fit's recorded SHA-256 names the data it saw.

    archscale published                     # the table, as in the README
    archscale published --sweep-rows DIR    # DIR/published-<engine>-<gpu>.jsonl
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "perfmodel" / "data" / "published_throughput.csv"
# Hub model id -> preset. Meta-Llama-3-8B has Llama-3.1-8B's shape (same config.json dimensions and vocabulary).
MODEL_PRESETS = {
    "meta-llama/Meta-Llama-3-8B": "llama-3.1-8b",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-3B-Instruct": "qwen2.5-3b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "Qwen/Qwen3-8B": "qwen3-8b",
}
DTYPES = {"bfloat16": "bfloat16", "float16": "float16"}
# The engine limits a row may state: (the perfmodel's name, the CSV column).
LIMIT_COLUMNS = (("max_num_seqs", "max_num_seqs"), ("max_prefill_tokens", "max_num_batched_tokens"))


@dataclass(frozen=True)
class PublishedPoint:
    engine: str
    gpu: str
    model: str
    input_len: int
    output_len: int
    num_prompts: int
    published_output_tokens_per_s: float
    predicted_output_tokens_per_s: float  # with the engine's default priors
    fitted_output_tokens_per_s: float | None  # with the package's fit for (gpu, engine); None: no fit
    fit_split: str | None  # "train" or "holdout" in that fit
    source_url: str
    notes: str

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_output_tokens_per_s / self.published_output_tokens_per_s - 1.0)

    @property
    def fitted_error_pct(self) -> float | None:
        if self.fitted_output_tokens_per_s is None:
            return None
        return 100.0 * (self.fitted_output_tokens_per_s / self.published_output_tokens_per_s - 1.0)


def read_rows(path: Path = DATA) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _preset(model: str) -> str:
    preset = MODEL_PRESETS.get(model) or MODEL_PRESETS.get(model.removesuffix("-Instruct"))
    if preset is None:
        raise KeyError(f"no preset for {model}: add it to MODEL_PRESETS (checked against its config.json)")
    return preset


def to_sweep_row(row: dict, csv_line: int, csv_sha256: str) -> dict:
    """One published row as a measured sweep row (the keys `archscale sweep` writes that calibrate and compare read).
    Only the run's throughput is known: prefill time, TPOT and TTFT are None. The engine limits are the published
    ones where stated, else absent (the engine's defaults for the GPU apply)."""
    from harness.sweep.points import arch_fields, shape_hash
    from perfmodel import PRESETS, get_gpu

    if int(row["tp"]) != 1:
        raise ValueError(f"line {csv_line}: TP {row['tp']} rows are not converted (sweep rows are one GPU)")
    arch = PRESETS[_preset(row["model"])]
    options = {key: int(row[column]) for key, column in LIMIT_COLUMNS if row[column]}
    total = float(row["total_tokens_per_s"]) if row["total_tokens_per_s"] else None
    return {
        "status": "ok",
        "message": "",
        "config": arch.name,
        "shape_hash": shape_hash(arch),
        "arch": arch_fields(arch),
        "engine": row["engine"],
        "dtype": DTYPES[row["dtype"]],
        "attention": row["attention_backend"],
        "device": "cuda",
        "hardware": row["gpu"],
        "batch_size": int(row["num_prompts"]),
        "input_len": int(row["input_len"]),
        "output_len": int(row["output_len"]),
        "output_tokens_per_s": float(row["output_tokens_per_s"]),
        "total_tokens_per_s": total,
        "prefill_time_s": None,
        "tpot_s": None,
        "ttft_s": None,
        "options": options,
        "metadata": {
            "source": "published",
            "gpu_name": get_gpu(row["gpu"]).display_name,
            "engine_version": row["engine_version"],
            "model": row["model"],
            "source_url": row["source_url"],
            "derived": row["derived"],
            "published_csv": "perfmodel/data/published_throughput.csv",
            "published_csv_line": csv_line,
            "published_csv_sha256": csv_sha256,
        },
    }


def sweep_row_groups(path: Path = DATA) -> dict[tuple[str, str], list[dict]]:
    """{(engine, gpu): sweep rows}, in the CSV's order (its header is line 1)."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    groups: dict[tuple[str, str], list[dict]] = {}
    for line, row in enumerate(read_rows(path), 2):
        if int(row["tp"]) != 1:
            continue  # sweep rows are one GPU; the table predicts TP rows on their own
        groups.setdefault((row["engine"], row["gpu"]), []).append(to_sweep_row(row, line, sha))
    return groups


def write_sweep_rows(out_dir: Path, path: Path = DATA) -> list[Path]:
    """DIR/published-<engine>-<gpu>.jsonl for every group, each replaced atomically."""
    from perfmodel.atomic_io import write_atomic

    written = []
    for (engine, gpu), rows in sweep_row_groups(path).items():
        text = "".join(json.dumps(row, sort_keys=True, allow_nan=False) + "\n" for row in rows)
        written.append(write_atomic(out_dir / f"published-{engine}-{gpu}.jsonl", text))
    return written


def predict_published(rows: list[dict], calibration_file: Path | None = None) -> list[PublishedPoint]:
    """Every row predicted with its engine's priors, and with the fit for its (GPU, engine) in `calibration_file`
    (default: the package's, perfmodel/data/published_calibration.toml) where there is one."""
    from perfmodel import get_gpu
    from perfmodel.calibration import (
        PUBLISHED_CALIBRATION,
        engine_priors,
        load_calibration_file,
        read_toml,
        with_fitted_factors,
    )

    calibration_file = PUBLISHED_CALIBRATION if calibration_file is None else Path(calibration_file)
    records = read_toml(calibration_file, "calibration file") if calibration_file.is_file() else {}
    fits = load_calibration_file(calibration_file) if records else {}
    sha = hashlib.sha256(DATA.read_bytes()).hexdigest()
    points = []
    for line, row in enumerate(rows, 2):
        gpu = get_gpu(row["gpu"])
        sweep_row = to_sweep_row(row, line, sha) if int(row["tp"]) == 1 else None  # TP rows are not converted
        priors = engine_priors(gpu, row["engine"])
        predicted = _predict_row(row, sweep_row, gpu, priors)
        fit = fits.get(gpu.name, {}).get(row["engine"])
        fitted, split = None, None
        if fit is not None and sweep_row is not None:  # the fits are of single-GPU rows
            fitted = _predict_row(row, sweep_row, gpu, with_fitted_factors(priors, fit))
            recorded = _split_of(records[gpu.name][row["engine"]])
            if recorded is not None:
                split = "train" if recorded.is_train(sweep_row) else "holdout"
        points.append(PublishedPoint(row["engine"], row["gpu"], row["model"], int(row["input_len"]),
                                     int(row["output_len"]), int(row["num_prompts"]),
                                     float(row["output_tokens_per_s"]), predicted, fitted, split,
                                     row["source_url"], row["notes"]))  # fmt: skip
    return points


def _predict_row(row: dict, sweep_row: dict | None, gpu, calibration) -> float:
    """Output tokens/s of a published row under `calibration`: as its sweep row, which calibrate sees (TP 1), or, for
    a TP row (no sweep row), the preset at the row's dtype on `tp` GPUs with the same limits and the policy of the
    release that measured it."""
    from harness.sweep.rows import predict_rows

    if sweep_row is not None:
        return float(predict_rows([sweep_row], gpu, calibration).output_tokens_per_s[0])
    from dataclasses import replace

    from perfmodel import PRESETS, ArchBatch, estimate
    from perfmodel.arch import DTYPE_BYTES
    from perfmodel.calibration import with_release_policy

    arch = replace(PRESETS[_preset(row["model"])], dtype_bytes=DTYPE_BYTES[DTYPES[row["dtype"]]])
    calibration = with_release_policy(calibration, row["engine"], row["engine_version"], gpu.name)
    limits = {key: int(row[column]) for key, column in LIMIT_COLUMNS if row[column]}
    e = estimate(ArchBatch.from_archs([arch]), gpu, batch_size=int(row["num_prompts"]), input_len=int(row["input_len"]),
                 output_len=int(row["output_len"]), calibration=calibration, tp=int(row["tp"]), **limits)  # fmt: skip
    return float(e.output_tokens_per_s[0])


def _split_of(record: dict):
    """The split a calibration table records (its train_<what> list), or None when it records none."""
    from harness.calibrate.fit import Split
    from harness.sweep.rows import SPLIT_KEYS

    for by, what in SPLIT_KEYS.items():
        if isinstance(record.get(f"train_{what}"), list):
            return Split(by=by, train=list(record[f"train_{what}"]), holdout=list(record.get(f"holdout_{what}", [])))
    return None


def _summary(errors: list[float]) -> str:
    import numpy as np

    if not errors:
        return "-"
    values = np.abs(errors)
    return f"{np.median(values):.1f}% / {values.max():.1f}%"


def markdown_table(points: list[PublishedPoint]) -> str:
    """Per (engine, GPU) the median / max |error| with the priors and, where fitted, on the training and held-out
    rows; then every row."""
    groups: dict[tuple[str, str], list[PublishedPoint]] = {}
    for p in points:
        groups.setdefault((p.engine, p.gpu), []).append(p)
    lines = ["| engine | GPU | rows | priors: median / max \\|error\\| | fitted, training rows | fitted, held-out rows |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for (engine, gpu), group in groups.items():
        fitted = {side: [p.fitted_error_pct for p in group if p.fit_split == side] for side in ("train", "holdout")}
        cells = [f"{_summary(fitted[side])} ({len(fitted[side])} rows)" if fitted[side] else "not fitted"
                 for side in ("train", "holdout")]  # fmt: skip
        lines.append(f"| {engine} | {gpu} | {len(group)} | {_summary([p.error_pct for p in group])} | "
                     f"{cells[0]} | {cells[1]} |")  # fmt: skip
    lines += ["", "| engine | GPU | model | in / out | prompts | published out tok/s | priors | error | fitted | error |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in points:
        fitted = "-" if p.fitted_output_tokens_per_s is None else f"{p.fitted_output_tokens_per_s:,.1f}"
        fitted_error = "-" if p.fitted_error_pct is None else f"{p.fitted_error_pct:+.1f}% ({p.fit_split})"
        lines.append(f"| {p.engine} | {p.gpu} | [{p.model}]({p.source_url}) | {p.input_len} / {p.output_len} | "
                     f"{p.num_prompts} | {p.published_output_tokens_per_s:,.1f} | "
                     f"{p.predicted_output_tokens_per_s:,.1f} | {p.error_pct:+.1f}% | {fitted} | {fitted_error} |")  # fmt: skip
    return "\n".join(lines)


def adopt_fits(candidate_file: Path, out: Path) -> list[str]:
    """Write to `out` the [<gpu>.<engine>] tables of `candidate_file` (fits by `archscale calibrate` to the published
    rows) that predict the rows they held out better than the engine's priors do — a lower median and a lower max
    |error| of output tokens/s — and return one line per table saying what was decided and why. A table with no
    held-out row is not adopted: nothing would show that it generalizes."""
    import numpy as np

    from harness.toml_io import dumps, write_atomic
    from perfmodel.calibration import load_calibration_file, read_toml

    raw = read_toml(Path(candidate_file), "calibration file")
    points = predict_published(read_rows(), candidate_file)
    adopted, lines = {}, []
    for gpu, engines in raw.items():
        for engine, table in engines.items():
            held = [p for p in points if (p.gpu, p.engine) == (gpu, engine) and p.fit_split == "holdout"]
            name = f"[{gpu}.{engine}]"
            if _split_of(table) is None:
                lines.append(f"{name}: not adopted (its table records no train/held-out split)")
                continue
            if not held:
                lines.append(f"{name}: not adopted (no published row held out of its fit)")
                continue
            priors = np.abs([p.error_pct for p in held])
            fitted = np.abs([p.fitted_error_pct for p in held])
            figures = (f"held-out median / max |error| {np.median(fitted):.1f}% / {fitted.max():.1f}% fitted, "
                       f"{np.median(priors):.1f}% / {priors.max():.1f}% with the priors, {len(held)} rows")  # fmt: skip
            if np.median(fitted) < np.median(priors) and fitted.max() < priors.max():
                adopted.setdefault(gpu, {})[engine] = table
                lines.append(f"{name}: adopted ({figures})")
            else:
                lines.append(f"{name}: not adopted ({figures})")
    header = ("# Written by `archscale published --adopt`: the fits of `archscale calibrate` to published vLLM/SGLang\n"
              "# throughputs (perfmodel/data/published_throughput.csv) that predict their held-out rows better than\n"
              "# the engines' priors. `get_calibration` uses a table here for its GPU and engine (`make\n"
              "# calibrate-published` rewrites this file).\n\n")  # fmt: skip
    write_atomic(out, header + dumps(adopted), check=load_calibration_file if adopted else None)
    return lines
