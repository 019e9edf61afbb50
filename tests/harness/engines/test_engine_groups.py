"""One vLLM / SGLang engine per config (harness/engines/external.py `run_points`), through `archscale sweep` on the fake
engines (tests/harness/fake_engines.py): each point its own warm-up and rows, a fresh engine after a failed point, a
build failure on every point, the prefix cache emptied before every run, and vLLM's own per-step statistics summed
in the rows and kept beside the sweep."""

import json
import sys
from pathlib import Path

import pytest
from fake_engines import sweep

from harness.cli.main import main
from harness.sweep.results_io import read_jsonl


def engine_builds(log: Path) -> list[dict]:
    return [c["llm"] for c in map(json.loads, log.read_text().splitlines()) if "llm" in c]


def test_one_engine_serves_a_configs_points_each_with_its_own_warm_up(tmp_path, fake_engines):
    out = tmp_path / "s.jsonl"
    assert sweep("vllm", out, "--input-len", "16,32") == 0  # 2 configs x 2 batch sizes x 2 prompt lengths
    rows = read_jsonl(out)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert len(engine_builds(fake_engines)) == 2
    for config in ("tiny-mha", "tiny-gqa4"):
        served = [r for r in rows if r["config"] == config]
        assert sorted(r["engine_points_before"] for r in served) == [0, 1, 2, 3]
        assert len({r["engine_init_s"] for r in served}) == 1  # the same engine's build, on every row
    calls = [json.loads(line) for line in fake_engines.read_text().splitlines()]
    generates = [c for c in calls if "prompts" in c]
    assert len(generates) == 8 * 2  # per point: its own warm-up, then one timed run
    # the points share seeds (a point's prompts are a prefix of a longer point's): the prefix cache is emptied before
    # every generate, so none is served from it
    kinds = ["reset" if "reset_prefix_cache" in c else "generate" for c in calls if "prompts" in c or "reset" in str(c)]
    assert kinds == ["reset", "generate"] * 16


@pytest.mark.parametrize(("mode", "status"), [("oom-generate-b3", "oom"), ("crash-generate-b3", "error")])
def test_a_point_that_fails_is_its_row_and_a_fresh_engine_serves_the_rest(tmp_path, fake_engines, monkeypatch,
                                                                          mode, status):  # fmt: skip
    monkeypatch.setenv("FAKE_ENGINE_MODE", mode)
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "tiny-mha", "--engine", "vllm", "--engine-python", sys.executable, "--device", "cpu",
                 "--batch-size", "1,3,2", "--input-len", "16", "--output-len", "4", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    rows = {r["batch_size"]: r for r in read_jsonl(out)}
    assert rows[3]["status"] == status and rows[1]["status"] == rows[2]["status"] == "ok"
    assert rows[1]["engine_points_before"] == 0 and rows[2]["engine_points_before"] == 0  # a fresh engine after 3
    assert len(engine_builds(fake_engines)) == 2
    before = out.read_bytes()
    monkeypatch.delenv("FAKE_ENGINE_MODE")
    assert main(["sweep", "tiny-mha", "--engine", "vllm", "--engine-python", sys.executable, "--device", "cpu",
                 "--batch-size", "1,3,2", "--input-len", "16", "--output-len", "4", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    assert out.read_bytes() == before  # a failed point is a finished row: resume measures nothing again


def test_vllms_own_steps_are_summed_in_the_row_and_kept_beside_the_sweep(tmp_path, fake_engines, capsys):
    out = tmp_path / "vllm.jsonl"
    assert sweep("vllm", out, "--repeats", "2") == 0  # batch 1 and 3, prompts of 16, 4 output tokens
    rows = read_jsonl(out)
    for row in rows:
        summary = row["scheduler"]  # the first timed run's: every prompt in one step, then 3 decode steps
        assert (summary["steps"], summary["steps_with_prompts"]) == (4, 1)
        assert summary["prompt_tokens"] == 16 * row["batch_size"] and summary["decode_tokens"] == 3 * row["batch_size"]
        assert summary["ttft_steps_mean"] == 1 and summary["max_running"] == row["batch_size"]
        assert "scheduler_steps" not in row
    traces = read_jsonl(tmp_path / "steps" / "vllm.jsonl")
    assert [(t["config"], t["batch_size"]) for t in traces] == [(r["config"], r["batch_size"]) for r in rows]
    assert all(len(t["runs"]) == 2 and len(t["runs"][0]) == 4 for t in traces)  # both timed runs, every step
    assert main(["schedule", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lockstep" in printed and "Step count within 5% or 3 steps of the engine's: 4 of 4" in printed


def test_an_engine_that_cannot_be_built_fails_each_of_its_points_once_built(tmp_path, fake_engines, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_MODE", "oom-build")
    out = tmp_path / "s.jsonl"
    assert sweep("vllm", out) == 0
    rows = read_jsonl(out)
    assert len(rows) == 4 and all(r["status"] == "oom" and "CUDA out of memory" in r["message"] for r in rows)
    assert all(r["engine_init_s"] is None for r in rows)
