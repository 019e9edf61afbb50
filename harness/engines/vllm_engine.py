"""vLLM adapter: `archscale sweep ... --engine vllm`, each point through `LLM.generate` in vLLM's own Python.

What it sends (the rest, the process, timing and parsing: harness.engines.external; the worker:
harness/engines/workers/vllm_offline.py):
- engine: `LLM(model=<temp dir>, skip_tokenizer_init=True, load_format="dummy", dtype=<--dtype>,
  tensor_parallel_size=1, disable_log_stats=False)` plus every `--engine-arg`. `disable_log_stats=False` is
  EngineArgs' default, which `vllm/benchmarks/throughput.py` (it builds `LLM(**asdict(EngineArgs.from_cli_args()))`)
  runs with and which keeps per-request first-token times in `RequestOutput.metrics`; the `LLM` class alone would
  default to True. Everything else is vLLM's default (max_num_seqs and max_num_batched_tokens from
  `EngineArgs.get_batch_defaults` by GPU, gpu_memory_utilization 0.9, CUDA graphs on, the attention backend vLLM
  picks) unless given: `--no-cuda-graph` is `enforce_eager=True`, `--max-prefill-tokens N` is
  `max_num_batched_tokens=N`, `--block-size N` is `block_size=N`, `--engine-arg attention_backend=FLASH_ATTN`
  picks the backend (an EngineArgs field in recent versions; older ones read VLLM_ATTENTION_BACKEND).
- sampling: `SamplingParams(n=1, temperature=0.0, ignore_eos=True, detokenize=False, max_tokens=O)`: greedy like
  our engine (vLLM's benchmark samples at temperature 1.0), nothing detokenized; with `ignore_eos` only `max_tokens`
  ends a request, so each gets exactly O tokens (checked), without `min_tokens` and its per-step logits processor.
"""

from __future__ import annotations

from pathlib import Path

from harness.engines.base import EngineOptions, Workload
from harness.engines.external import ExternalEngine

CPU_KV_CACHE_GIB = 4


class VllmEngine(ExternalEngine):
    name = "vllm"
    module = "vllm"
    worker = "vllm_offline.py"
    requirement = "vllm>=0.33,<0.34"
    prefill_arg = "max_num_batched_tokens"
    block_arg = "block_size"
    graph_off = ("enforce_eager", True)
    fixed_args = ("model", "tokenizer", "skip_tokenizer_init", "load_format", "dtype", "tensor_parallel_size")
    defaults = {"disable_log_stats": False, "enable_logging_iteration_details": True}
    venv = ".venv-vllm"
    make_target = "vllm-cpu"

    def worker_env(self, options: EngineOptions) -> dict:
        """On a CPU, vLLM's KV cache is VLLM_CPU_KVCACHE_SPACE GiB; unset, vLLM 0.32 takes most of the machine's
        memory (20.8 of 23.5 GiB here), so a sweep's own process and the next worker could not fit: 4 GiB unless
        the caller's environment says otherwise (the row's engine_config records what it was)."""
        return {"VLLM_CPU_KVCACHE_SPACE": str(CPU_KV_CACHE_GIB)} if options.device == "cpu" else {}

    def fixed_kwargs(self, model_dir: Path, options: EngineOptions) -> dict:
        return {"model": str(model_dir), "skip_tokenizer_init": True, "load_format": "dummy", "dtype": options.dtype,
                "tensor_parallel_size": 1}  # fmt: skip

    def sampling(self, workload: Workload) -> dict:
        o = workload.output_len
        return {"n": 1, "temperature": 0.0, "ignore_eos": True, "detokenize": False, "max_tokens": o}
