"""`archscale report` and harness.report.build: on a toy results folder (a probed CPU, a sweep measured at a known factor of
the model, a calibration, a search result, a kernel benchmark, PNGs) the report holds the tables, values, links and
run metadata; it is the same text when rendered twice; a missing kind of file is a plain sentence; a corrupt file is
one error line, exit 2, and leaves REPORT.md as it was. On the committed results/, every PNG is linked."""

import datetime
import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.report.build import build_report
from perfmodel import PRESETS, predict
from perfmodel.arch import ARCH_FIELDS
from perfmodel.hardware import load_hardware_file

REPO_RESULTS = Path(__file__).resolve().parents[3] / "results"
IN, OUT, FACTOR = 32, 8, 1.25  # measured FACTOR times faster than the uncalibrated model predicts


def meta(command: str, sha: str, time_utc: str) -> dict:
    return {"command": f"/some/venv/bin/{command}", "git_sha": sha, "git_dirty": False, "time_utc": time_utc,
            "cpu_model": "Toy CPU", "cpu_count_logical": 2, "gpu_name": None, "torch_version": "9.9.9",
            "python_version": "3.11.0", "archscale_version": "0.1.0"}  # fmt: skip


SWEEP_META = meta("archscale sweep tiny-mha tiny-gqa4 --out results/sweeps/torch-toy-cpu.jsonl", "a" * 40,
                  "2030-01-02T03:04:05+00:00")  # fmt: skip
CAL_META = meta("archscale calibrate results/sweeps/torch-toy-cpu.jsonl", "b" * 40, "2030-01-02T04:00:00+00:00")
PROBE_META = meta("archscale probe --out results/hardware/toy-cpu.toml", "c" * 40, "2030-01-02T02:00:00+00:00")
SEARCH_META = meta("archscale search --baseline llama-3.2-1b --gpu h200", "d" * 40, "2030-01-02T05:00:00+00:00")
KERNEL_META = meta("archscale bench-kernel", "e" * 40, "2030-01-02T06:00:00+00:00") | {"gpu_name": "Toy GPU"}


def sweep_row(config: str, batch: int, hw_path: Path) -> dict:
    p = predict(replace(PRESETS[config], dtype_bytes=4), load_hardware_file(hw_path), batch_size=batch, input_len=IN,
                output_len=OUT, engine="torch")  # fmt: skip
    arch = PRESETS[config]
    return {"config": config, "shape_hash": "0123456789", "engine": "torch", "device": "cpu", "dtype": "float32",
            "attention": "torch", "batch_size": batch, "input_len": IN, "output_len": OUT, "status": "ok",
            "output_tokens_per_s": p.output_tokens_per_s / FACTOR, "total_tokens_per_s": 1.0,
            "ttft_s": p.ttft_s * FACTOR, "tpot_s": p.tpot_s * FACTOR, "concurrency": batch, "waves": 1,
            "hardware": "local-cpu", "predicted": None, "metadata": SWEEP_META,
            "arch": {f: getattr(arch, f) for f in ARCH_FIELDS if f not in ("name", "dtype_bytes")}}  # fmt: skip


def search_payload() -> dict:
    def role(name, d, loss, tok_s):
        return {"name": name, "d_model": d, "n_layer": 16, "n_head": 32, "n_kv_head": 8, "d_ff": 8192,
                "mlp_attn_ratio": 4.8, "gqa_group": 4, "n_params_non_embedding": 973_000_000,
                "predicted_loss": loss, "predicted_loss_stderr": None, "output_tokens_per_s": tok_s,
                "throughput_ratio_vs_baseline": tok_s / 1000.0}  # fmt: skip

    return {"baseline": role("llama-3.2-1b", 2048, 2.5756, 1000.0), "panda": role("panda", 2496, 2.5425, 530.0),
            "surefire": role("surefire", 3584, 2.5754, 1290.0), "surefire_gqa": None,
            "frontier": [role("f", 3584, 2.5754, 1290.0)] * 3, "n_candidates": 2386, "n_ties": 939,
            "deployment": {"gpu": "h200", "engine": "torch", "batch_size": 128, "input_len": 4096, "output_len": 1024},
            "law": "toy law", "loss_target": 2.5756, "loss_tolerance": 0.0269, "loss_tolerance_source": "toy source",
            "min_loss": 2.5425, "notes": ["a toy note"], "kind": "prediction", "metadata": SEARCH_META}  # fmt: skip


@pytest.fixture
def results(tmp_path, write_probed_hardware) -> Path:
    root = tmp_path / "results"
    for sub in ("hardware", "sweeps", "calibration", "compare/toy-cpu-calibrated"):
        (root / sub).mkdir(parents=True)
    hw_path = root / "hardware" / "toy-cpu.toml"
    hw_path.write_text(write_probed_hardware().read_text() + "\n[local-cpu.metadata]\n"
                       + "".join(f"{k} = {json.dumps(v)}\n" for k, v in PROBE_META.items() if v is not None))  # fmt: skip
    rows = [sweep_row(c, b, hw_path) for c in ("tiny-mha", "tiny-gqa4") for b in (1, 4)]
    (root / "sweeps" / "torch-toy-cpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "calibration" / "toy-cpu.toml").write_text(f"""\
[local-cpu.torch]
compute_efficiency = 0.5
memory_efficiency = 0.625
kernel_launch_overhead_s = 5e-6
step_overhead_s = 1e-4
gpu_memory_utilization = 0.5
workspace_bytes = 268435456
calibrated = true
n_points = 2
train_configs = ["tiny-mha"]
holdout_configs = ["tiny-gqa4"]
fitted = ["compute_efficiency", "memory_efficiency"]

[local-cpu.torch.std_errors]
compute_efficiency = 0.0123
memory_efficiency = 0.0456

[local-cpu.torch.sweep_sha256]
"results/sweeps/torch-toy-cpu.jsonl" = "{"0" * 64}"

[local-cpu.torch.metadata]
{"".join(f"{k} = {json.dumps(v)}{chr(10)}" for k, v in CAL_META.items() if v is not None)}""")
    (root / "search-llama-3.2-1b-h200.json").write_text(json.dumps(search_payload(), indent=2))
    (root / "search-llama-3.2-1b-h200.png").write_bytes(b"\x89PNG toy")
    (root / "compare" / "toy-cpu-calibrated" / "compare-ratio-vs-batch.png").write_bytes(b"\x89PNG toy")
    (root / "compare" / "toy-cpu-calibrated" / "calibrate.txt").write_text("the fit's report\n")
    return root


def kernel_row(batch: int, kv_len: int, status: str = "ok") -> dict:
    row = {"kernel": "gqa_decode", "batch_size": batch, "kv_len": kv_len, "group": 4, "head_dim": 128,
           "num_kv_heads": 8, "dtype": "bfloat16", "status": status, "metadata": KERNEL_META}  # fmt: skip
    if status == "ok":
        row |= {"copy_bandwidth_bytes_per_s": 3.0e12, "triton_bytes_per_s": 2.4e12, "triton_pct_of_copy_bandwidth": 80.0,
                "sdpa_bytes_per_s": 1.2e12, "flex_status": "skipped (--no-flex)", "fastest": "triton",
                "triton_vs_fastest_peer": 0.5, "max_abs_diff_vs_sdpa": 0.0039}  # fmt: skip
    return row


def run_report(capsys, *argv) -> tuple[int, str, str]:
    code = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_holds_every_section_with_its_values_links_and_metadata(results):
    text = build_report(results)
    # sweep: the uncalibrated model is FACTOR too fast on every point (out tok/s +25%, TPOT -20%), split by what the
    # calibration held out
    assert "### [sweeps/torch-toy-cpu.jsonl](sweeps/torch-toy-cpu.jsonl)" in text
    assert "| all | out tok/s | 4 | 25.0% | 25.0% | +25.0% |" in text
    assert "| holdout | TPOT | 2 | 20.0% | 20.0% | -20.0% |" in text
    assert "| train | out tok/s | 2 | 25.0% | 25.0% | +25.0% |" in text
    assert "calibrated" in text and "4 measured points (4 rows, 0 not ok) on Toy CPU (2 CPUs), engine torch" in text
    assert "Throughput ratio of each config to `tiny-gqa4`" in text and "| tiny-mha | 2 |" in text
    assert "[calibration/toy-cpu.toml](calibration/toy-cpu.toml) [local-cpu.torch]" in text
    # calibration: factors with std errors, the split, the point count, the sweep's changed SHA
    assert "| compute_efficiency | 0.5 | 0.012 | fitted |" in text
    assert "| step_overhead_s | 0.0001 (100 us) | - | prior (held) |" in text
    assert "Fitted on 2 points; train configs: tiny-mha; holdout configs: tiny-gqa4." in text
    assert "the committed file has changed since" in text
    # hardware entry and search tables
    assert "| [hardware/toy-cpu.toml](hardware/toy-cpu.toml) | `local-cpu` | Toy CPU, 2 logical CPUs | 20.0 |" in text
    assert "| panda | 2496 | 16 | 32/8 | 8192 | 4.80 | 4 | 973M | 2.5425 | n/a | 530 | 0.53 |" in text
    assert "ties: 939 candidates within 0.0269" in text and "- Note: a toy note" in text
    # PNGs: embedded next to their search, listed under All plots, linked from their sweep
    assert "![search-llama-3.2-1b-h200.png](search-llama-3.2-1b-h200.png)" in text
    assert "- [compare/toy-cpu-calibrated/compare-ratio-vs-batch.png](compare/toy-cpu-calibrated/compare-ratio" in text
    assert "[compare/toy-cpu-calibrated/calibrate.txt](compare/toy-cpu-calibrated/calibrate.txt)" in text
    # every section carries its runs' metadata: command (program folder dropped), short SHA, machine, versions, time
    for m, sha in ((SWEEP_META, "aaaaaaa"), (CAL_META, "bbbbbbb"), (PROBE_META, "ccccccc"), (SEARCH_META, "ddddddd")):
        command = m["command"].removeprefix("/some/venv/bin/")
        assert f"`{command}` · git {sha} · Toy CPU, 2 logical CPUs · torch 9.9.9, Python 3.11.0, archscale 0.1.0 · " \
               f"{m['time_utc']}" in text  # fmt: skip
    assert "- Run (4 rows): `archscale sweep tiny-mha" in text and "/some/venv" not in text


def test_report_is_deterministic_and_holds_no_time_of_rendering(results, capsys):
    first = build_report(results)
    assert build_report(results) == first
    assert datetime.date.today().isoformat() not in first
    assert set(re.findall(r"\d{4}-\d\d-\d\dT[\d:+]+", first)) <= {m["time_utc"] for m in
                                                                  (SWEEP_META, CAL_META, PROBE_META, SEARCH_META)}  # fmt: skip
    assert run_report(capsys, "--results", results)[0] == 0
    written = (results / "REPORT.md").read_bytes()
    assert written.decode() == first
    assert run_report(capsys, "--results", results)[0] == 0
    assert (results / "REPORT.md").read_bytes() == written


def test_links_are_relative_to_where_the_report_goes(results, capsys):
    out = results.parent / "elsewhere" / "R.md"
    code, stdout, _ = run_report(capsys, "--results", results, "--out", out)
    assert code == 0 and f"Wrote {out}" in stdout
    assert "](../results/search-llama-3.2-1b-h200.png)" in out.read_text()


def test_missing_files_degrade_to_plain_sentences(tmp_path):
    text = build_report(tmp_path)
    for sentence in ("No kernel benchmark has been committed yet (it needs a CUDA GPU: `archscale bench-kernel`",
                     "No hardware entry has been committed yet", "No calibration has been committed yet",
                     "No sweep has been committed yet", "No search result has been committed yet",
                     "No plot has been committed yet."):  # fmt: skip
        assert sentence in text


def test_a_sweep_without_its_calibration_is_compared_uncalibrated_only(results):
    (results / "calibration" / "toy-cpu.toml").unlink()
    text = build_report(results)
    assert "none committed for it, so uncalibrated only" in text
    assert "| all | out tok/s | 4 | 25.0% | 25.0% | +25.0% |" in text and "| holdout |" not in text


def test_kernel_benchmark_table(results):
    (results / "kernels").mkdir()
    rows = [kernel_row(8, 2048), kernel_row(1, 512), kernel_row(256, 32768, status="oom")]
    (results / "kernels" / "gqa_decode-toy-gpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (results / "kernels" / "gqa_decode-toy-gpu.png").write_bytes(b"\x89PNG toy")
    text = build_report(results)
    assert "No kernel benchmark" not in text
    assert "2 points measured, 1 not (OOM or failed)" in text and "3,000 GB/s" in text and "Fastest: triton 2" in text
    rows_at = [line for line in text.splitlines() if line.startswith("| 128 | 4 |")]
    assert rows_at[0] == "| 128 | 4 | 1 | 512 | 2,400 | 80.0% | 1,200 | skipped | triton | 0.50 | 3.9e-03 |"
    assert len(rows_at) == 2  # sorted by (head_dim, group, batch, kv_len); the OOM row is counted, not tabled
    assert "Toy GPU" in text and "![kernels/gqa_decode-toy-gpu.png](kernels/gqa_decode-toy-gpu.png)" in text


@pytest.mark.parametrize(
    "relpath, content, message",
    [
        ("sweeps/torch-toy-cpu.jsonl", '{"config": "tiny-mha"}\n{"config": \n', "torch-toy-cpu.jsonl:2: corrupt"),
        ("kernels/gqa_decode-x.jsonl", "not json\n", "gqa_decode-x.jsonl:1: corrupt"),
        ("calibration/toy-cpu.toml", "[local-cpu.torch\n", "malformed TOML"),
        ("search-llama-3.2-1b-h200.json", '{"baseline": ', "corrupt JSON"),
        ("search-llama-3.2-1b-h200.json", '{"baseline": {}}', "not what `archscale search --save` writes"),
    ],
)
def test_a_corrupt_file_is_one_error_line_and_leaves_the_report(results, capsys, relpath, content, message):
    assert run_report(capsys, "--results", results)[0] == 0
    before = (results / "REPORT.md").read_bytes()
    (results / relpath).parent.mkdir(exist_ok=True)
    (results / relpath).write_text(content)
    code, out, err = run_report(capsys, "--results", results)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("archscale: error: ") and message in err
    assert (results / "REPORT.md").read_bytes() == before
    assert sorted(p.name for p in results.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_a_missing_results_folder_is_one_error_line(tmp_path, capsys):
    code, _, err = run_report(capsys, "--results", tmp_path / "nope")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err


def test_the_committed_results_link_every_png_and_every_studys_output():
    text = build_report(REPO_RESULTS)
    pngs = sorted(p.relative_to(REPO_RESULTS).as_posix() for p in REPO_RESULTS.rglob("*.png"))
    assert pngs, "the committed results/ should hold plots"
    studies = [p.relative_to(REPO_RESULTS).as_posix() for p in REPO_RESULTS.glob("compare/*/**/*") if p.is_file()]
    for path in (*pngs, *studies):
        assert f"]({path})" in text, path


def test_the_committed_report_covers_the_fits_to_published_throughputs():
    """results/published (make calibrate-published): each fit is a calibration section, each file of published rows a
    sweep section, compared with its priors (not the adopted fit) and with its fit, labelled as others' figures."""
    text = build_report(REPO_RESULTS)
    tables = tomllib.loads((REPO_RESULTS / "published" / "calibration.toml").read_text())
    for gpu, engines in tables.items():
        for engine in engines:
            assert f"### [published/calibration.toml](published/calibration.toml) [{gpu}.{engine}]" in text
    for path in sorted((REPO_RESULTS / "published").glob("*.jsonl")):
        section = text.split(f"### [published/{path.name}]")[1].split("\n### ")[0]
        assert "published by others, not measured here" in section and "git " not in section
    a100 = text.split("### [published/published-vllm-a100-80gb.jsonl]")[1].split("\n### ")[0]
    assert "| holdout | out tok/s | 8 | 22.0% | 35.8% |" in a100  # the priors' held-out figures, as in the README


def test_a_search_on_a_probed_machine_says_so_and_an_older_one_is_read_as_before(results):
    assert "Around `llama-3.2-1b` on h200 (torch), batch 128" in build_report(results)  # saved without the fields
    payload = search_payload()
    payload["deployment"] |= {"gpu": "local-cpu", "dtype_bytes": 4, "hardware_measured": True}
    (results / "search-llama-3.2-1b-h200.json").write_text(json.dumps(payload))
    assert "Around `llama-3.2-1b` on local-cpu (torch, 4-byte weights, a probed machine), batch 128" in build_report(
        results
    )


def test_a_sweeps_passes_are_one_study_compared_at_their_medians(results):
    """sweeps/<name>-pass2.jsonl measures the same grid again: one section, the first pass first (it names the
    machine), each point at its median with the spread between passes."""
    first = results / "sweeps" / "torch-toy-cpu.jsonl"
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    again = [{**r, "output_tokens_per_s": r["output_tokens_per_s"] * 1.2} for r in rows]
    (results / "sweeps" / "torch-toy-cpu-pass2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in again))
    text = build_report(results)
    assert text.count("### [sweeps/torch-toy-cpu") == 1
    assert "### [sweeps/torch-toy-cpu.jsonl](sweeps/torch-toy-cpu.jsonl) + [sweeps/torch-toy-cpu-pass2.jsonl]" in text
    assert "4 measured points (8 rows, 0 not ok)" in text and "Predicted for hardware entry `local-cpu`" in text
    spread = 100 * 0.2 / 1.1  # (1.2 − 1) / median (1.1) of the two passes
    assert (
        f"4 points measured more than once (medians compared): their measurements spread by median {spread:.1f}%"
        in text
    )
