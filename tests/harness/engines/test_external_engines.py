"""The vLLM and SGLang adapters without either engine: the engine arguments, sampling and prompts each builds for a
point, the model folder it writes, the parsing of a worker's result (throughput by hand, OOM and error mapping, a
wrong output length), the missing-engine error; then the whole path — temporary folder, worker subprocess in
another interpreter, timing, parsing, rows written by `archscale sweep` — against fake `vllm` and `sglang` packages
that imitate `LLM.generate` / `Engine.generate`. Real engines on a GPU: the `gpu` tests at the end (skipped without
CUDA or the engine; ARCHSCALE_VLLM_PYTHON / ARCHSCALE_SGLANG_PYTHON name an engine's own interpreter)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fake_engines import sweep

from harness.cli.main import main
from harness.engines import get_engine
from harness.engines.base import EngineOptions, Workload
from harness.engines.external import parse_engine_arg, write_model_dir
from harness.engines.external_result import ExternalMeasurement, WorkerOutcome, measurement_from, parse_result
from harness.engines.workers.offline_common import OOM_MARKERS, failure_status, make_prompts
from harness.sweep.points import KEY_FIELDS, SweepPoint, point_row
from harness.sweep.results_io import read_jsonl
from perfmodel import PRESETS
from perfmodel.errors import ArchscaleInputError

ARCH = PRESETS["tiny-gqa4"]
POINT = Workload(batch_size=3, input_len=16, output_len=4)
GPU = EngineOptions(device="cuda", dtype="bfloat16", attention="auto", seed=7, repeats=2)
TORCH_OPTION_KEYS = {"device", "dtype", "attention", "cuda_graph", "block_size", "max_prefill_tokens",
                     "memory_utilization", "workspace_bytes", "repeats", "seed"}  # fmt: skip


def spec_for(name: str, options: EngineOptions = GPU, workload: Workload = POINT, tmp: Path = Path("/tmp/x")):
    """The spec of a worker serving one point, with that point's fields at the top (as a one-point worker sees it)."""
    spec = get_engine(name).build_spec(ARCH, [workload], options, tmp / "model", tmp)
    (point,) = spec.pop("points")
    return {**spec, **point}


# ---- what each adapter builds for a point (no engine needed) ----
def test_vllm_point_spec_dummy_weights_no_tokenizer_greedy_exact_lengths():
    spec = spec_for("vllm")
    assert spec["engine_kwargs"] == {"model": "/tmp/x/model", "skip_tokenizer_init": True, "load_format": "dummy",
                                     "dtype": "bfloat16", "tensor_parallel_size": 1, "disable_log_stats": False,
                                     "enable_logging_iteration_details": True}  # fmt: skip
    sampling = {"n": 1, "temperature": 0.0, "ignore_eos": True, "detokenize": False, "max_tokens": 4}
    assert spec["sampling"] == sampling  # greedy; with ignore_eos only max_tokens ends a request
    assert (spec["batch_size"], spec["input_len"], spec["output_len"], spec["vocab"]) == (3, 16, 4, ARCH.vocab)
    assert (spec["seed"], spec["repeats"], spec["result_path"]) == (7, 2, "/tmp/x/result-0.json")
    assert spec["warmup"] == {"num_requests": 3, "input_len": 16, "output_len": 4, "seed": 10_007}
    big = spec_for("vllm", workload=Workload(64, 512, 128))["warmup"]
    assert (big["num_requests"], big["input_len"], big["output_len"]) == (16, 512, 16)  # as SGLang's: 16 short ones


def test_sglang_point_spec_dummy_weights_no_tokenizer_greedy_exact_lengths():
    spec = spec_for("sglang", options=replace(GPU, dtype="float16"))
    assert spec["engine_kwargs"] == {"model_path": "/tmp/x/model", "skip_tokenizer_init": True,
                                     "load_format": "dummy", "dtype": "float16", "tp_size": 1}  # fmt: skip
    assert spec["sampling"] == {"temperature": 0.0, "ignore_eos": True, "max_new_tokens": 4}


@pytest.mark.parametrize(
    ("name", "graph", "prefill", "block"),
    [("vllm", "enforce_eager", "max_num_batched_tokens", "block_size"),
     ("sglang", "disable_cuda_graph", "chunked_prefill_size", "page_size")],
)  # fmt: skip
def test_our_flags_map_to_the_engines_arguments_and_user_arguments_pass_through(name, graph, prefill, block):
    engine = get_engine(name)
    assert engine.engine_args({}) == {}  # nothing given: the engine's own defaults
    args = engine.engine_args({"attention_backend": "FLASH_ATTN", "max_num_seqs": 64}, cuda_graph=False,
                              max_prefill_tokens=4096, block_size=32)  # fmt: skip
    assert args == {"attention_backend": "FLASH_ATTN", "max_num_seqs": 64, graph: True, prefill: 4096, block: 32}
    fields = engine.options_fields(args)
    assert fields == {"attention": "FLASH_ATTN", "cuda_graph": False, "max_prefill_tokens": 4096, "block_size": 32}
    assert engine.options_fields({}) == {"attention": "auto", "cuda_graph": True, "max_prefill_tokens": None,
                                         "block_size": None}  # fmt: skip
    kwargs = spec_for(name, options=replace(GPU, engine_args=args))["engine_kwargs"]
    assert kwargs["max_num_seqs"] == 64 and kwargs[graph] is True and kwargs[prefill] == 4096
    with pytest.raises(ArchscaleInputError, match="contradicts"):
        engine.engine_args({graph: False}, cuda_graph=False)
    with pytest.raises(ArchscaleInputError, match="use --dtype"):
        engine.engine_args({"dtype": "float16"})
    with pytest.raises(ArchscaleInputError, match="archscale sets it"):
        engine.engine_args({"load_format": "auto"})
    with pytest.raises(ArchscaleInputError, match="archscale sets it"):
        engine.check_options(replace(GPU, engine_args={"skip_tokenizer_init": False}))


def test_engine_arg_values_are_json_when_they_parse():
    assert parse_engine_arg("max_num_seqs=256") == ("max_num_seqs", 256)
    assert parse_engine_arg("max-num-seqs=256") == ("max_num_seqs", 256)
    assert parse_engine_arg("enforce_eager=true") == ("enforce_eager", True)
    assert parse_engine_arg("gpu_memory_utilization=0.8") == ("gpu_memory_utilization", 0.8)
    assert parse_engine_arg("attention_backend=FLASH_ATTN") == ("attention_backend", "FLASH_ATTN")
    assert parse_engine_arg('compilation_config={"level": 3}') == ("compilation_config", {"level": 3})
    for bad in ("max_num_seqs", "=3", "1x=2"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_engine_arg(bad)


def test_prompts_have_exact_lengths_in_the_vocabulary_and_come_from_the_seed():
    prompts = make_prompts(5, 37, 512, seed=3)
    assert len(prompts) == 5 and all(len(p) == 37 for p in prompts)
    assert all(0 <= t < 512 for p in prompts for t in p) and len({t for p in prompts for t in p}) > 100
    assert make_prompts(5, 37, 512, seed=3) == prompts  # the same ids in every process
    assert make_prompts(5, 37, 512, seed=4) != prompts  # each timed run and the warm-up get fresh ids
    assert make_prompts(2, 37, 512, seed=3) == prompts[:2]


def test_the_model_folder_holds_the_hf_config_at_the_sweeps_dtype(tmp_path):
    folder = write_model_dir(ARCH, "float16", tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config == {**replace(ARCH, dtype_bytes=2).to_hf_config(), "torch_dtype": "float16"}
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_key_value_heads"] == 2
    assert json.loads((folder / "generation_config.json").read_text()) == {"bos_token_id": 1, "eos_token_id": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json"]  # no tokenizer


def test_torch_rows_keep_their_options_and_external_rows_add_the_engines():
    torch_row = point_row(SweepPoint(ARCH, "torch", POINT, EngineOptions()), {"status": "ok"}, None)
    assert set(torch_row["options"]) == TORCH_OPTION_KEYS
    options = replace(GPU, engine_args={"max_num_seqs": 8}, engine_python="/env/bin/python", engine_timeout_s=60.0)
    row = point_row(SweepPoint(ARCH, "vllm", POINT, options), {"status": "ok"}, None)
    assert row["options"]["engine_args"] == {"max_num_seqs": 8} and row["options"]["engine_python"] == "/env/bin/python"
    assert row["attention"] == "auto" and row["engine"] == "vllm"


# ---- a worker's result → the measurement ----
RESULT = {
    "status": "ok", "engine": "vllm", "engine_version": "0.33.1",
    "engine_env": {"python": "/env/bin/python", "python_version": "3.12.3", "torch_version": "2.14.0"},
    "engine_config": {"max_num_seqs": 1024, "max_num_batched_tokens": 16384, "enforce_eager": False},
    "init_s": 31.5, "warmup_s": 0.4, "peak_memory_bytes": 70_000_000_000, "memory_method": "nvml device used",
    "runs": [
        {"elapsed_s": 0.5, "prompt_lens": [16, 16, 16], "output_lens": [4, 4, 4], "ttft_s": [0.05, 0.01, 0.03]},
        {"elapsed_s": 0.25, "prompt_lens": [16, 16, 16], "output_lens": [4, 4, 4], "ttft_s": [0.02, 0.04, 0.06]},
        {"elapsed_s": 0.4, "prompt_lens": [16, 16, 16], "output_lens": [4, 4, 4], "ttft_s": [0.1, 0.1, 0.1]},
    ],
}  # fmt: skip


def test_a_result_parses_into_output_only_tokens_per_s_and_ttft_percentiles():
    m = parse_result(json.dumps(RESULT), POINT, "vllm")
    assert isinstance(m, ExternalMeasurement) and m.status == "ok"
    # 3 requests × 4 output tokens over 0.5 / 0.25 / 0.4 s: 24, 48, 30 tok/s; the median run is 30 (0.4 s)
    assert [r["output_tokens_per_s"] for r in m.runs] == pytest.approx([24.0, 48.0, 30.0])
    assert m.output_tokens_per_s == pytest.approx(30.0) and m.total_time_s == pytest.approx(0.4)
    assert m.total_tokens_per_s == pytest.approx(3 * 20 / 0.4)  # prompts counted in total only
    assert m.runs[0]["ttft_s"] == pytest.approx(0.03) and m.runs[0]["ttft_p50_s"] == pytest.approx(0.03)
    assert m.runs[0]["ttft_p99_s"] == pytest.approx(0.05) and m.runs[1]["ttft_p50_s"] == pytest.approx(0.04)
    assert m.ttft_s == pytest.approx(0.04)  # median of the runs' means 0.03, 0.04, 0.1
    assert m.prefill_time_s is None and m.tpot_s is None and m.concurrency is None and m.waves is None
    assert m.engine_version == "0.33.1" and m.engine_config["max_num_seqs"] == 1024
    assert m.engine_env["torch_version"] == "2.14.0" and m.peak_memory_bytes == 70_000_000_000
    assert (m.engine_init_s, m.warmup_s, m.peak_memory_method) == (31.5, 0.4, "nvml device used")
    row = m.to_dict()
    assert {"engine_version", "engine_config", "engine_env", "runs", "ttft_p99_s"} <= set(row)


def test_no_first_token_times_leave_ttft_empty():
    runs = [{**run, "ttft_s": None} for run in RESULT["runs"]]
    m = parse_result(json.dumps({**RESULT, "runs": runs}), POINT, "sglang")
    assert m.status == "ok" and m.output_tokens_per_s == pytest.approx(30.0)
    assert m.ttft_s is None and m.ttft_p50_s is None and m.ttft_p99_s is None


def test_a_wrong_output_or_prompt_length_is_an_error_naming_it():
    short = [{**RESULT["runs"][0], "output_lens": [4, 3, 2]}]
    m = parse_result(json.dumps({**RESULT, "runs": short}), POINT, "vllm")
    assert m.status == "error" and m.output_tokens_per_s is None
    assert "outputs of 2..3 tokens for 2 of 3 requests, expected 4 each" in m.message
    missing = [{**RESULT["runs"][0], "output_lens": [4, 4], "prompt_lens": [16, 16]}]
    assert "2 requests, expected 3" in parse_result(json.dumps({**RESULT, "runs": missing}), POINT, "vllm").message
    prompts = [{**RESULT["runs"][0], "prompt_lens": [16, 15, 16]}]
    assert "prompts of 15 tokens" in parse_result(json.dumps({**RESULT, "runs": prompts}), POINT, "vllm").message


def test_failures_map_to_oom_or_error_with_their_first_line():
    oom = {"status": "oom", "message": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
           "engine_version": "0.33.1"}  # fmt: skip
    m = parse_result(json.dumps(oom), POINT, "vllm")
    assert (m.status, m.engine_version) == ("oom", "0.33.1") and "Tried to allocate" in m.message
    dead = json.dumps({"status": "error", "message": "EngineDeadError: EngineCore encountered an issue"})
    assert parse_result(dead, POINT, "vllm").status == "error"
    # the engine's helper process died of an OOM its frontend only reports as a dead engine: the log says so
    log = ["INFO loading", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB", "ERROR dead"]
    m = parse_result(dead, POINT, "vllm", log)
    assert m.status == "oom" and m.message.startswith("torch.OutOfMemoryError")
    assert parse_result("{not json", POINT, "vllm").status == "error"
    # no result at all: the exit code and the log's last line, or the timeout
    crashed = measurement_from("sglang", POINT, None, WorkerOutcome(-9, False, 60.0, ["booting", "Killed", ""]))
    assert crashed.status == "error" and crashed.message.endswith("exited with code -9 before writing a result: Killed")
    late = measurement_from("sglang", POINT, None, WorkerOutcome(-9, True, 60.0, []))
    assert late.status == "error" and "timed out after 60 s" in late.message
    assert measurement_from("vllm", POINT, None, WorkerOutcome(1, False, 60.0, [log[1]])).status == "oom"


@pytest.mark.parametrize(
    ("exc", "status"),
    [(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), "oom"),
     (RuntimeError("CUDA error: out of memory"), "oom"),
     (ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"), "oom"),
     (ValueError("To serve at least one request ... is larger than the available KV cache memory (1.2 GiB)"), "oom"),
     (RuntimeError("Not enough memory. Please try to increase --mem-fraction-static."), "oom"),
     (type("OutOfMemoryError", (RuntimeError,), {})("allocation failed"), "oom"),
     (ValueError("unsupported head size 24"), "error")],
)  # fmt: skip
def test_the_worker_tells_an_oom_from_another_failure(exc, status):
    assert failure_status(exc) == status and OOM_MARKERS


# ---- the missing engine ----
@pytest.fixture
def no_engines_here(monkeypatch, tmp_path):
    import harness.engines.external as external

    monkeypatch.setattr(external, "REPO_ROOT", tmp_path / "no-repo")  # no .venv-vllm either
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("vllm", "sglang") else
                        real(name, *a))  # fmt: skip


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_a_missing_engine_is_one_line_naming_the_extra_and_exit_2(tmp_path, capsys, no_engines_here, engine):
    out = tmp_path / "s.jsonl"
    grid = ["--batch-size", "1", "--input-len", "8", "--output-len", "2", "--out", str(out)]
    assert main(["sweep", "tiny-mha", "--engine", engine, *grid]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"pip install 'archscale[{engine}]'" in err and "--engine-python" in err
    assert ("make vllm-cpu" in err) == (engine == "vllm")  # vLLM's CPU build has a make target
    assert not out.exists()


def test_without_engine_python_the_repositorys_vllm_environment_is_the_default(tmp_path, monkeypatch, no_engines_here):
    import harness.engines.external as external

    python = tmp_path / "repo" / ".venv-vllm" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    monkeypatch.setattr(external, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(external, "probe", lambda exe, module, gpu=False: {"found": True, "version": "0.32.0"})
    assert get_engine("vllm").locate()["python"] == str(python)
    with pytest.raises(ArchscaleInputError, match="sglang is not installed"):
        get_engine("sglang").locate()


def test_an_engine_python_without_the_engine_is_one_line(tmp_path, capsys):
    argv = ["sweep", "tiny-mha", "--engine", "vllm", "--batch-size", "1", "--input-len", "8", "--output-len", "2",
            "--out", str(tmp_path / "s.jsonl")]  # fmt: skip
    assert main([*argv, "--engine-python", str(tmp_path / "nope")]) == 2
    assert "no such executable" in capsys.readouterr().err
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("this Python has vllm")
    assert main([*argv, "--engine-python", sys.executable]) == 2  # asked in a subprocess, without importing it
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot import vllm" in err and "vllm>=0.33,<0.34" in err
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--engine-arg", "max_num_seqs=8"], "apply to --engine vllm|sglang"),
     (["--engine", "vllm", "--attention", "triton"], "--engine-arg attention_backend=NAME"),
     (["--engine", "vllm", "--tp", "2"], "tensor_parallel_size 1 for now"),
     (["--engine", "vllm", "--engine-arg", "load_format=auto"], "archscale sets it"),
     (["--engine", "sglang", "--no-cuda-graph", "--engine-arg", "disable_cuda_graph=false"], "contradicts")],
)  # fmt: skip
def test_engine_options_that_cannot_work_are_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "s.jsonl"
    argv = ["sweep", "tiny-mha", "--batch-size", "1", "--input-len", "8", "--output-len", "2", "--out", str(out)]
    assert main([*argv, *extra, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not out.exists()


# ---- the whole path against fake engines (tests/harness/fake_engines.py) ----
def test_a_vllm_sweep_runs_end_to_end_on_a_fake_engine_and_resumes(tmp_path, fake_engines, capsys):
    out = tmp_path / "vllm.jsonl"
    assert sweep("vllm", out, "--repeats", "2", "--seed", "5", "--engine-arg", "max_num_seqs=64") == 0
    printed = capsys.readouterr().out
    assert "Engine vllm 0.33.0 from" in printed and "max_num_seqs=64" in printed
    rows = read_jsonl(out)
    assert len(rows) == 4 and {r["config"] for r in rows} == {"tiny-mha", "tiny-gqa4"}
    for row in rows:
        assert row["status"] == "ok", row.get("message")
        assert (row["engine"], row["device"], row["dtype"], row["attention"]) == ("vllm", "cpu", "float32", "auto")
        b, o = row["batch_size"], row["output_len"]
        assert len(row["runs"]) == 2 and row["total_time_s"] >= 0.02
        for run in row["runs"]:  # output tokens alone over the generate call; prompts in the total only
            assert run["output_tokens_per_s"] == pytest.approx(b * o / run["total_time_s"])
            assert run["total_tokens_per_s"] == pytest.approx(b * (16 + o) / run["total_time_s"])
        assert 0.005 <= row["ttft_s"] <= row["total_time_s"] and row["ttft_p99_s"] >= row["ttft_p50_s"]
        assert row["prefill_time_s"] is None and row["tpot_s"] is None
        assert row["engine_version"] == "0.33.0" and row["engine_config"]["max_num_seqs"] == 64
        assert row["engine_config"]["enforce_eager"] is False and row["engine_env"]["python"] == sys.executable
        assert row["options"]["engine_args"] == {"max_num_seqs": 64} and row["options"]["engine_python"]
        assert row["engine_kwargs"]["disable_log_stats"] is False and row["engine_kwargs"]["max_num_seqs"] == 64
        assert row["engine_kwargs"]["load_format"] == "dummy"
        assert row["metadata"]["vllm_version"] == "0.33.0" and row["metadata"]["engine_python"] == sys.executable
        assert set(KEY_FIELDS) <= set(row) and row["point_wall_s"] > 0
    calls = [json.loads(line) for line in fake_engines.read_text().splitlines()]
    builds = [c["llm"] for c in calls if "llm" in c]
    assert len(builds) == 2  # one engine (and one process) per config, serving its two points
    assert all(b["load_format"] == "dummy" and b["skip_tokenizer_init"] and b["tensor_parallel_size"] == 1
               and b["max_num_seqs"] == 64 and b["dtype"] == "float32" for b in builds)  # fmt: skip
    assert not Path(builds[0]["model"]).exists()  # the point's temporary folder is gone
    generates = [c for c in calls if "prompts" in c]
    assert len(generates) == 4 * 3  # per point: the warm-up, then 2 timed runs
    first_point = generates[:3]  # tiny-mha, batch 1: warm-up seed 10 005, then runs with seeds 5 and 6
    assert first_point[0]["prompts"] == make_prompts(1, 16, 512, 10_005)
    assert [g["prompts"] for g in first_point[1:]] == [make_prompts(1, 16, 512, 5), make_prompts(1, 16, 512, 6)]
    assert all(g["sampling"] == {"n": 1, "temperature": 0.0, "ignore_eos": True, "detokenize": False,
                                 "max_tokens": 4} for g in generates)  # fmt: skip
    before = out.read_bytes()
    assert sweep("vllm", out, "--repeats", "2", "--seed", "5", "--engine-arg", "max_num_seqs=64") == 0
    assert "0 to measure" in capsys.readouterr().out and out.read_bytes() == before


def test_an_sglang_sweep_runs_end_to_end_on_a_fake_engine(tmp_path, fake_engines):
    out = tmp_path / "sglang.jsonl"
    assert sweep("sglang", out, "--no-cuda-graph", "--engine-arg", "attention_backend=triton") == 0
    rows = read_jsonl(out)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    row = rows[-1]
    assert row["attention"] == "triton" and row["options"]["cuda_graph"] is False
    assert row["engine_version"] == "0.5.23" and row["metadata"]["sglang_version"] == "0.5.23"
    assert row["engine_config"]["max_running_requests"] == 48 and row["engine_config"]["disable_cuda_graph"] is True
    assert row["engine_config"]["max_total_num_tokens"] == 123456
    assert 0 < row["ttft_s"] <= row["total_time_s"]
    calls = [json.loads(line) for line in fake_engines.read_text().splitlines()]
    assert sum("shutdown" in c for c in calls) == 2  # one engine per config
    assert all(c["engine"]["load_format"] == "dummy" and c["engine"]["tp_size"] == 1 for c in calls if "engine" in c)


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [("short", "error", "vllm returned outputs of 3 tokens for 1 of 1 requests, expected 4 each"),
     ("oom-generate", "oom", "OutOfMemoryError: CUDA out of memory"),
     ("oom-build", "oom", "CUDA out of memory"),
     ("crash-build", "error", "the vllm worker exited with code 3 before writing a result")],
)  # fmt: skip
def test_failing_points_through_the_worker_become_rows_with_their_status(tmp_path, fake_engines, monkeypatch, mode,
                                                                        status, message):  # fmt: skip
    monkeypatch.setenv("FAKE_ENGINE_MODE", mode)
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "tiny-mha", "--engine", "vllm", "--engine-python", sys.executable, "--device", "cpu",
                 "--batch-size", "1", "--input-len", "16", "--output-len", "4", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_jsonl(out)
    assert row["status"] == status and message in row["message"] and row["output_tokens_per_s"] is None


def test_a_worker_past_its_timeout_is_killed_and_the_point_is_an_error(tmp_path, fake_engines, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_MODE", "hang-generate")
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "tiny-mha", "--engine", "sglang", "--engine-python", sys.executable, "--device", "cpu",
                 "--batch-size", "1", "--input-len", "8", "--output-len", "2", "--quiet", "--out", str(out),
                 "--engine-timeout", "2"]) == 0  # fmt: skip
    (row,) = read_jsonl(out)
    assert row["status"] == "error" and "timed out after 2 s" in row["message"] and row["point_wall_s"] < 30


def test_an_engine_that_hangs_in_shutdown_after_its_result_keeps_the_point(tmp_path, fake_engines, monkeypatch):
    import harness.engines.external as external

    monkeypatch.setattr(external, "SHUTDOWN_GRACE_S", 1.0)
    monkeypatch.setenv("FAKE_ENGINE_MODE", "hang-shutdown")
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "tiny-mha", "--engine", "sglang", "--engine-python", sys.executable, "--device", "cpu",
                 "--batch-size", "2", "--input-len", "8", "--output-len", "2", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_jsonl(out)
    assert row["status"] == "ok" and row["point_wall_s"] < 30  # the result counted, the hung engine killed


# ---- real engines on a GPU ----
def engine_python(name: str) -> str | None:
    """The engine's interpreter: ARCHSCALE_<NAME>_PYTHON, else this one if it has the engine; None: skip."""
    python = os.environ.get(f"ARCHSCALE_{name.upper()}_PYTHON")
    if python:
        return python
    return sys.executable if importlib.util.find_spec(name) is not None else None


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vllm", "sglang"])
def test_a_real_engine_serves_one_small_point_on_a_gpu(tmp_path, name):
    python = engine_python(name)
    if python is None:
        pytest.skip(f"{name} is not installed (set ARCHSCALE_{name.upper()}_PYTHON to its environment's Python)")
    probe = get_engine(name).locate(python, gpu=True)
    if not probe.get("gpu_name"):
        pytest.skip(f"{name}'s torch sees no CUDA GPU")
    out = tmp_path / "s.jsonl"
    # small-base: head size 64 (every attention backend of both engines supports it), 46M parameters
    assert main(["sweep", "small-base", "--engine", name, "--engine-python", python, "--batch-size", "4",
                 "--input-len", "64", "--output-len", "8", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    (row,) = read_jsonl(out)
    assert row["status"] == "ok", row.get("message")
    assert row["output_tokens_per_s"] > 0 and row["output_tokens_per_s"] == pytest.approx(4 * 8 / row["total_time_s"])
    assert row["engine_version"] == probe["version"] and row["engine_config"]
    assert row["peak_memory_bytes"] and row["peak_memory_bytes"] > 0
