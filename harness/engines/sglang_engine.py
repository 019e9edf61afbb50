"""SGLang adapter: `archscale sweep ... --engine sglang`, each point through `Engine.generate(input_ids=...)` in
SGLang's own Python.

What it sends (the rest, the process, timing and parsing: harness.engines.external; the worker:
harness/engines/workers/sglang_offline.py):
- engine: `sglang.Engine(model_path=<temp dir>, skip_tokenizer_init=True, load_format="dummy", dtype=<--dtype>,
  tp_size=1)` plus every `--engine-arg` (ServerArgs fields, python/sglang/srt/server_args.py). Everything else is
  SGLang's default (max_running_requests sized from the KV pool, chunked_prefill_size and mem_fraction_static by
  GPU memory, CUDA graphs on, the attention backend SGLang picks) unless given: `--no-cuda-graph` is
  `disable_cuda_graph=True`, `--max-prefill-tokens N` is `chunked_prefill_size=N`, `--block-size N` is
  `page_size=N`, `--engine-arg attention_backend=fa3` picks the backend, `--engine-arg enable_metrics=true` adds
  per-request first-token times (TTFT) to the results.
- sampling: `{"temperature": 0.0, "ignore_eos": True, "max_new_tokens": O}`, as
  `sglang/benchmark/offline_throughput.py`: greedy like our engine; with `ignore_eos` only `max_new_tokens` ends a
  request, so each gets exactly O tokens (checked), without `min_new_tokens` and its per-step penalizer.
"""

from __future__ import annotations

from pathlib import Path

from harness.engines.base import EngineOptions, Workload
from harness.engines.external import ExternalEngine


class SglangEngine(ExternalEngine):
    name = "sglang"
    module = "sglang"
    worker = "sglang_offline.py"
    requirement = "sglang>=0.5.23,<0.6"
    prefill_arg = "chunked_prefill_size"
    block_arg = "page_size"
    graph_off = ("disable_cuda_graph", True)
    fixed_args = ("model_path", "tokenizer_path", "skip_tokenizer_init", "load_format", "dtype", "tp_size")
    defaults = {}

    def fixed_kwargs(self, model_dir: Path, options: EngineOptions) -> dict:
        return {"model_path": str(model_dir), "skip_tokenizer_init": True, "load_format": "dummy",
                "dtype": options.dtype, "tp_size": 1}  # fmt: skip

    def sampling(self, workload: Workload) -> dict:
        o = workload.output_len
        return {"temperature": 0.0, "ignore_eos": True, "max_new_tokens": o}
