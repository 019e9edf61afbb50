"""`report`: everything committed under results/ rendered as one Markdown document (results/REPORT.md).

`build_report(results_dir)` reads the results files and returns the Markdown text; it writes nothing. Sections, each
with the metadata of the runs it came from (git SHA, machine, versions, command, time): kernel benchmarks
(kernels/*.jsonl), measured hardware entries (hardware/*.toml), calibrations (calibration/*.toml, and
published/calibration.toml: fits to others' published throughputs), every sweep (sweeps/*.jsonl, and the published
rows as sweep rows, published/*.jsonl; a sweep's further passes with it) compared with the current model
uncalibrated and calibrated (harness/report/sweeps.py, through harness.calibrate.compare, recomputed from the rows so the
report matches the code), the search results (search-*.json, predictions) and a link to every PNG. A
missing kind of file gives a plain sentence saying what would produce it. The text holds no current time, so
re-running on unchanged results gives the same file. A corrupt or unexpected file raises ArchscaleInputError.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from harness.report.markdown import CALIBRATION_FILES, md_table, pct, reading, run_line, runs_lines
from harness.report.sweeps import sweep_section
from harness.tables import humanize_bytes, humanize_count, humanize_seconds
from perfmodel.errors import ArchscaleInputError

SEARCH_ROLES = ("baseline", "panda", "surefire", "surefire_gqa")


def build_report(results_dir: str | Path, *, link_dir: str | Path | None = None) -> str:
    """The Markdown report of `results_dir`; links are relative to `link_dir` (default: `results_dir`, where
    REPORT.md goes)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ArchscaleInputError(f"results folder {root} does not exist or is not a folder")
    ctx = _Context(root, Path(link_dir) if link_dir is not None else root)
    schema = f" (schema: {ctx.link(root / 'README.md')})" if (root / "README.md").is_file() else ""
    parts = ["# archscale results", "",
             f"Rendered by `archscale report` from the files under `{root.name}/`{schema}. Nothing here is written by "
             "hand, and the file holds no time of rendering: re-running on unchanged results gives the same file. "
             "Each section names the runs it came from."]  # fmt: skip
    for section in (_kernel_section, _hardware_section, _calibration_section, sweep_section, _search_section,
                    _plots_section):  # fmt: skip
        parts += section(ctx)
    return "\n".join(parts).rstrip("\n") + "\n"


class _Context:
    def __init__(self, root: Path, link_dir: Path):
        self.root, self.link_dir = root, link_dir

    def target(self, path: Path) -> str:
        """`path` relative to the folder the report is written to, as a Markdown link target."""
        return Path(os.path.relpath(path.resolve(), self.link_dir.resolve())).as_posix()

    def link(self, path: Path, text: str | None = None) -> str:
        return f"[{text or self.rel(path)}]({self.target(path)})"

    def image(self, path: Path) -> str:
        return f"![{self.rel(path)}]({self.target(path)})"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def files(self, patterns: str | tuple[str, ...]) -> list[Path]:
        patterns = (patterns,) if isinstance(patterns, str) else patterns
        return [p for pattern in patterns for p in sorted(self.root.glob(pattern)) if p.is_file()]


# ---- sections ----
def _kernel_section(ctx: _Context) -> list[str]:
    from harness.sweep.results_io import read_jsonl

    lines = ["", "## Kernel benchmarks: GQA decode attention", ""]
    files = ctx.files("kernels/*.jsonl")
    if not files:
        return lines + ["No kernel benchmark has been committed yet (it needs a CUDA GPU: `archscale bench-kernel` "
                        "writes `results/kernels/gqa_decode-<gpu>.jsonl` and its plot).", ""]  # fmt: skip
    for path in files:
        rows = read_jsonl(path)
        lines += [f"### {ctx.link(path)}", ""]
        if not rows:
            lines += ["Empty file: no point measured.", ""]
            continue
        with reading(path, "archscale bench-kernel"):
            ok = sorted((r for r in rows if r.get("status") == "ok"),
                        key=lambda r: (r["head_dim"], r["group"], r["batch_size"], r["kv_len"]))  # fmt: skip
            copy = sorted({r["copy_bandwidth_bytes_per_s"] for r in ok})
            fastest = Counter(r.get("fastest", "?") for r in ok)
            lines += [f"{len(ok)} points measured, {len(rows) - len(ok)} not (OOM or failed). Achieved bandwidth = "
                      "bytes moved (K + V once per KV head, q, output) / median time; copy bandwidth measured in "
                      f"the same run: {', '.join(f'{c / 1e9:,.0f} GB/s' for c in copy) or '-'}. Fastest: "
                      f"{', '.join(f'{k} {v}' for k, v in sorted(fastest.items())) or '-'}.", ""]  # fmt: skip
            lines += runs_lines(rows)

            def gbps(r, impl):
                value = r.get(f"{impl}_bytes_per_s")
                return f"{value / 1e9:,.0f}" if value is not None else str(r.get(f"{impl}_status", "-")).split()[0]

            body = [(r["head_dim"], r["group"], r["batch_size"], r["kv_len"], gbps(r, "triton"),
                     pct(r.get("triton_pct_of_copy_bandwidth")), gbps(r, "sdpa"), gbps(r, "flex"),
                     r.get("fastest", "-"), f"{r.get('triton_vs_fastest_peer', float('nan')):.2f}",
                     f"{r.get('max_abs_diff_vs_sdpa', float('nan')):.1e}") for r in ok]  # fmt: skip
            lines += md_table(("head_dim", "group", "batch", "kv_len", "ours GB/s", "ours % of copy", "SDPA GB/s",
                               "Flex GB/s", "fastest", "ours / fastest peer (time)", "max abs diff vs SDPA"), body)  # fmt: skip
        png = path.with_suffix(".png")
        if png.is_file():
            lines += [ctx.image(png), ""]
    return lines


def _hardware_section(ctx: _Context) -> list[str]:
    from perfmodel.calibration import read_toml
    from perfmodel.hardware import load_hardware_file

    lines = ["", "## Measured hardware entries", ""]
    files = ctx.files("hardware/*.toml")
    if not files:
        return lines + ["No hardware entry has been committed yet (`archscale probe --out "
                        "results/hardware/<machine>.toml` measures one).", ""]  # fmt: skip
    body, runs = [], []
    for path in files:
        for name in read_toml(path, "hardware file"):
            hw = load_hardware_file(path, name)
            peaks = ", ".join(f"{label} {value / 1e12:.3g} TFLOP/s" for label, value in (
                ("bf16", hw.peak_bf16_flops_per_s), ("fp16", hw.peak_fp16_flops_per_s),
                ("fp32", hw.peak_fp32_flops_per_s)) if value)  # fmt: skip
            body.append((ctx.link(path), f"`{name}`", hw.display_name, f"{hw.hbm_bandwidth_bytes_per_s / 1e9:,.1f}",
                         peaks, humanize_bytes(hw.memory_bytes), "yes" if hw.measured else "no",
                         ", ".join(sorted(hw.calibration_priors)) or "-"))  # fmt: skip
            runs.append(f"- {ctx.rel(path)} [{name}]: {run_line(hw.metadata)}")
    lines += md_table(("file", "entry", "machine", "bandwidth GB/s", "peak", "memory", "measured",
                       "priors for engines"), body)  # fmt: skip
    return lines + runs + [""]


def _calibration_section(ctx: _Context) -> list[str]:
    from perfmodel.calibration import load_calibration_file, read_toml

    lines = ["", "## Calibrations", ""]
    files = ctx.files(CALIBRATION_FILES)
    if not files:
        return lines + ["No calibration has been committed yet (`archscale calibrate SWEEP.jsonl --hardware F "
                        "--out results/calibration/<machine>.toml` fits one).", ""]  # fmt: skip
    for path in files:
        load_calibration_file(path)  # validates the factors
        for hardware, engines in read_toml(path, "calibration file").items():
            for engine, entry in engines.items():
                with reading(path, "archscale calibrate"):
                    lines += _calibration_entry(ctx, path, hardware, engine, entry)
    return lines


def _calibration_entry(ctx: _Context, path: Path, hardware: str, engine: str, entry: dict) -> list[str]:
    import numpy as np

    from harness.sweep.rows import SPLIT_KEYS, file_sha256
    from perfmodel.calibration import ARRAY_FIELDS, CALIBRATION_FIELDS

    std, fitted = entry.get("std_errors", {}), set(entry.get("fitted", []))
    lines = [f"### {ctx.link(path)} [{hardware}.{engine}]", ""]
    if "n_points" in entry:
        split = [f"{side} {kind.replace('_', ' ')}: {', '.join(map(str, entry[f'{side}_{kind}']))}"
                 for kind in SPLIT_KEYS.values() for side in ("train", "holdout") if f"{side}_{kind}" in entry]  # fmt: skip
        rms = entry.get("fit_rms_log_error")
        lines += [f"Fitted on {entry['n_points']} points; {'; '.join(split) or 'no split recorded'}"
                  + (f"; RMS log error on the training points {rms:.4f}" if rms is not None else "") + ".", ""]  # fmt: skip
    else:
        lines += ["No fit recorded in this table (factors written by hand or priors).", ""]

    def value(name):
        v = entry[name]
        if isinstance(v, list) and v and isinstance(v[0], list):  # the probe's GEMM shape grid, [rows][n][k]
            grid = np.asarray(v, dtype=float)
            return f"{' × '.join(map(str, grid.shape))} grid, {grid.min():.3g} to {grid.max():.3g}"
        if isinstance(v, list):  # the probe's GEMM curve and the shape grid's axes
            return ", ".join(f"{x:.4g}" for x in v)
        if name.endswith("_s"):
            return f"{v:.4g} ({humanize_seconds(v)})"
        return humanize_bytes(v) if name.endswith("_bytes") else f"{v:.4g}"

    def how(name):
        if name in ARRAY_FIELDS:
            return "measured by archscale probe"
        if name == "gemv_max_tokens" and "gemv_max_tokens_tried" in entry:
            return f"best of {', '.join(map(str, entry['gemv_max_tokens_tried']))}"
        return "fitted" if name in fitted else "prior (held)"

    names = [name for name in CALIBRATION_FIELDS if name != "calibrated"]
    body = [
        (name, value(name), f"{std[name]:.2g}" if name in std else "-", how(name)) for name in names if name in entry
    ]
    lines += md_table(("factor", "value", "± std error", "how"), body)
    absent = [name for name in names if name not in entry]
    if absent:
        lines += [f"Not in the file (the model's defaults apply): {', '.join(absent)}.", ""]
    for sweep, sha in sorted(entry.get("sweep_sha256", {}).items()):
        # The recorded path as given to calibrate (results/<folder>/<file>): look for it in this results folder.
        parts = Path(sweep).parts
        current = ctx.root.joinpath(*parts[parts.index("results") + 1 :]) if "results" in parts else ctx.root / sweep
        state = f"not under {ctx.root.name}/" if not current.is_file() else (
            "matches the committed file" if file_sha256(current) == sha else "the committed file has changed since")  # fmt: skip
        lines.append(f"- Sweep fitted: `{sweep}` (SHA-256 {sha[:12]}…, {state})")
    return lines + [f"- Run: {run_line(entry.get('metadata'))}", ""]


def _search_section(ctx: _Context) -> list[str]:
    lines = ["", "## Architecture search (predictions, not measurements)", ""]
    files = ctx.files("search-*.json")
    if not files:
        return lines + ["No search result has been committed yet (`make results`, i.e. `archscale search ... --save "
                        "results/search-<baseline>-<gpu>.json`, writes them).", ""]  # fmt: skip
    for path in files:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchscaleInputError(f"{path}: corrupt JSON ({exc}); not a search result") from None
        with reading(path, "archscale search --save"):
            lines += _search_file(ctx, path, payload)
    return lines


def _search_hardware_note(deployment: dict) -> str:
    """The weights' width and whether the hardware was probed, where the saved search records them (older ones do not)."""
    note = f", {deployment['dtype_bytes']}-byte weights" if "dtype_bytes" in deployment else ""
    return note + (", a probed machine" if deployment.get("hardware_measured") else "")


def _search_file(ctx: _Context, path: Path, p: dict) -> list[str]:
    dep = p["deployment"]
    lines = [f"### {ctx.link(path)}", "",
             f"Around `{p['baseline']['name']}` on {dep['gpu']} ({dep['engine']}{_search_hardware_note(dep)}), batch "
             f"{dep['batch_size']}, in "
             f"{dep['input_len']} / out {dep['output_len']}. Law: {p['law']}. Loss target L_t = "
             f"{p['loss_target']:.4f}; ties: {p['n_ties']:,} candidates within {p['loss_tolerance']:.4f} of the lowest "
             f"predicted loss {p['min_loss']:.4f} ({p['loss_tolerance_source']}). Pareto frontier: "
             f"{len(p['frontier'])} of {p['n_candidates']:,} candidates.", ""]  # fmt: skip
    body = [(role.replace("_", "-"), r["d_model"], r["n_layer"], f"{r['n_head']}/{r['n_kv_head']}", r["d_ff"],
             f"{r['mlp_attn_ratio']:.2f}", r["gqa_group"], humanize_count(r["n_params_non_embedding"]),
             f"{r['predicted_loss']:.4f}", "n/a" if r["predicted_loss_stderr"] is None
             else f"{r['predicted_loss_stderr']:.4f}", f"{r['output_tokens_per_s']:,.0f}",
             f"{r['throughput_ratio_vs_baseline']:.2f}") for role in SEARCH_ROLES if (r := p.get(role))]  # fmt: skip
    lines += md_table(("", "d", "layers", "heads/kv", "d_ff", "r", "GQA", "N", "loss", "± se", "out tok/s", "x base"),
                      body)  # fmt: skip
    if p.get("placed"):
        base = p["baseline"]["output_tokens_per_s"]
        body = [(r["name"], r["d_model"], f"{r['n_head']}/{r['n_kv_head']}", f"{r['mlp_attn_ratio']:.2f}",
                 r["gqa_group"], f"{r['predicted_loss']:.4f}", f"{r['loss_rank_held_gqa']:,} of {r['n_held_gqa']:,}",
                 "yes" if r["within_tolerance"] else "no", "yes" if r["meets_loss_target"] else "no",
                 f"{r['output_tokens_per_s'] / base:.2f}") for r in p["placed"]]  # fmt: skip
        lines += md_table(("placed", "d", "heads/kv", "r", "GQA", "loss", "rank (GQA held)", "tie", "<= L_t",
                           "x base"), body)  # fmt: skip
    lines += [f"- Note: {note}" for note in p.get("notes", [])]
    lines += [f"- Run: {run_line(p.get('metadata'))}", ""]
    png = path.with_suffix(".png")
    if png.is_file():
        lines += [ctx.image(png), ""]
    return lines


def _plots_section(ctx: _Context) -> list[str]:
    pngs = ctx.files("**/*.png")
    lines = ["", "## All plots", ""]
    if not pngs:
        return lines + ["No plot has been committed yet.", ""]
    return lines + [f"- {ctx.link(p)}" for p in pngs] + [""]
