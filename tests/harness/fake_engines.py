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

def misbehave(where):
    mode = os.environ.get("FAKE_ENGINE_MODE", "")
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

class LLM:
    def __init__(self, **kwargs):
        misbehave("build")
        record({"llm": kwargs})
        sched = types.SimpleNamespace(max_num_seqs=kwargs.get("max_num_seqs", 256), max_num_batched_tokens=8192)
        cfg = types.SimpleNamespace(scheduler_config=sched, model_config=types.SimpleNamespace(enforce_eager=False))
        self.llm_engine = types.SimpleNamespace(vllm_config=cfg)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        misbehave("generate")
        arrival = time.time()
        record({"prompts": [p["prompt_token_ids"] for p in prompts], "sampling": sampling_params.kwargs})
        time.sleep(0.02)
        n = length(sampling_params.kwargs["max_tokens"], sampling_params.kwargs.get("ignore_eos"))
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
        misbehave("generate")
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
