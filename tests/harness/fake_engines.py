"""Fake `vllm` and `sglang` packages for the adapters' end-to-end tests (no engine, no GPU): the `fake_engines`
fixture puts them on PYTHONPATH, so the worker subprocess imports them as it would the real ones, and logs the calls
they receive; `sweep` runs `archscale sweep` on two tiny presets through one of them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli.main import main

FAKE_COMMON = """
import json, os, time

def record(entry):
    path = os.environ.get("FAKE_ENGINE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\\n")

def misbehave(where, n_prompts=None):
    mode = os.environ.get("FAKE_ENGINE_MODE", "")
    if n_prompts is not None and mode.endswith("-b%d" % n_prompts):  # e.g. oom-generate-b3: batches of 3 only
        mode = mode[: -len("-b%d" % n_prompts)]
    if mode == "crash-" + where:
        os._exit(3)
    if mode == "oom-" + where:
        raise type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB")
    if mode == "hang-" + where:
        time.sleep(60)

def length(n, ignore_eos):
    if not ignore_eos:  # a random model meets its EOS id early
        return n // 2
    return n - 1 if os.environ.get("FAKE_ENGINE_MODE") == "short" else n
"""
FAKE_VLLM = """
import time, types
from vllm._fake import record, misbehave, length
__version__ = "0.33.0"

class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

class StatLoggerManager:
    def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=None):
        pass

class LLM:
    def __init__(self, **kwargs):
        misbehave("build")
        record({"llm": kwargs})
        sched = types.SimpleNamespace(max_num_seqs=kwargs.get("max_num_seqs", 256), max_num_batched_tokens=8192)
        cache = types.SimpleNamespace(block_size=16, num_gpu_blocks=4096)
        cfg = types.SimpleNamespace(scheduler_config=sched, cache_config=cache,
                                    model_config=types.SimpleNamespace(enforce_eager=False))
        self.llm_engine = types.SimpleNamespace(vllm_config=cfg, logger_manager=StatLoggerManager())

    def trace(self, n, prompt_len, max_tokens):
        # the steps of a lockstep run, as vLLM's stat loggers get them: every prompt in one step, then decodes
        for step in range(max_tokens):
            details = types.SimpleNamespace(num_ctx_requests=n if step == 0 else 0,
                                            num_ctx_tokens=n * prompt_len if step == 0 else 0,
                                            num_generation_requests=0 if step == 0 else n,
                                            num_generation_tokens=0 if step == 0 else n, elapsed_ms=0.1)
            stats = types.SimpleNamespace(num_running_reqs=n, num_waiting_reqs=0, kv_cache_usage=0.01,
                                          step_counter=0, iteration_details=details)
            iteration = types.SimpleNamespace(iteration_timestamp=time.time(), num_generation_tokens=n,
                                              num_preempted_reqs=0, time_to_first_tokens_iter=[0.01] * n * (step == 0))
            self.llm_engine.logger_manager.record(scheduler_stats=stats, iteration_stats=iteration)

    def reset_prefix_cache(self):
        record({"reset_prefix_cache": True})
        return True

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        misbehave("generate", len(prompts))
        arrival = time.time()
        record({"prompts": [p["prompt_token_ids"] for p in prompts], "sampling": sampling_params.kwargs})
        time.sleep(0.02)
        n = length(sampling_params.kwargs["max_tokens"], sampling_params.kwargs.get("ignore_eos"))
        self.trace(len(prompts), len(prompts[0]["prompt_token_ids"]), n)
        metrics = types.SimpleNamespace(arrival_time=arrival, first_token_latency=0.01)
        return [types.SimpleNamespace(prompt_token_ids=list(p["prompt_token_ids"]), metrics=metrics,
                                      outputs=[types.SimpleNamespace(token_ids=[7] * n)]) for p in prompts]
"""
FAKE_SGLANG = """
import time
from sglang._fake import record, misbehave, length
__version__ = "0.5.23"

class Engine:
    def __init__(self, **kwargs):
        misbehave("build")
        record({"engine": kwargs})
        self.kwargs = kwargs

    def generate(self, input_ids=None, sampling_params=None):
        misbehave("generate", len(input_ids))
        record({"prompts": input_ids, "sampling": sampling_params})
        time.sleep(0.02)
        n = length(sampling_params["max_new_tokens"], sampling_params.get("ignore_eos"))
        meta = {"completion_tokens": n, "prefill_finished_ts": time.time() - 0.01}
        return [{"output_ids": [7] * n, "meta_info": {**meta, "prompt_tokens": len(ids)}} for ids in input_ids]

    def get_server_info(self):
        return {**self.kwargs, "internal_states": [{"max_total_num_tokens": 123456, "max_running_requests": 48}]}

    def shutdown(self):
        record({"shutdown": True})
        misbehave("shutdown")
"""


@pytest.fixture
def fake_engines(tmp_path, monkeypatch):
    """Fake vllm and sglang packages (with dist-info, so importlib.metadata sees their versions) on PYTHONPATH;
    the calls they receive are appended to FAKE_ENGINE_LOG."""
    root = tmp_path / "fake-site"
    for name, code, version in (("vllm", FAKE_VLLM, "0.33.0"), ("sglang", FAKE_SGLANG, "0.5.23")):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(textwrap.dedent(code))
        (root / name / "_fake.py").write_text(textwrap.dedent(FAKE_COMMON))
        dist = root / f"{name}-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (root / "vllm" / "inputs.py").write_text("def TokensPrompt(prompt_token_ids):\n"
                                             "    return {'prompt_token_ids': prompt_token_ids}\n")  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(root))
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_ENGINE_LOG", str(log))
    monkeypatch.delenv("FAKE_ENGINE_MODE", raising=False)
    return log


def sweep(engine: str, out: Path, *extra: str) -> int:
    return main(["sweep", "tiny-mha", "tiny-gqa4", "--engine", engine, "--engine-python", sys.executable,
                 "--device", "cpu", "--batch-size", "1,3", "--input-len", "16", "--output-len", "4", "--quiet",
                 "--out", str(out), *extra])  # fmt: skip
