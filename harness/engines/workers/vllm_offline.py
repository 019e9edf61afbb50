"""vLLM worker: one sweep point through vLLM's offline Python API, in vLLM's own environment (never imports archscale).

    ENGINE_PYTHON vllm_offline.py SPEC.json

As `vllm/benchmarks/throughput.py::run_vllm` (vLLM 0.33): `LLM(**engine_kwargs)`, one `SamplingParams` per run
with `ignore_eos=True` and `max_tokens` = the output length, prompts as `TokensPrompt(prompt_token_ids=...)`, and the
time of one `llm.generate(prompts, sampling_params)` call over all requests. Unlike that script we load no tokenizer
(`skip_tokenizer_init=True`, `detokenize=False`: its CLI always loads one), decode greedily (temperature 0, as our
engine; the script samples at temperature 1.0), and count output tokens alone for output tokens/s (the script's
`tokens_per_second` counts prompt plus output tokens). Like the script we set no `min_tokens`: with `ignore_eos`
only `max_tokens` ends a request, and `min_tokens` would add vLLM's min-tokens logits processor to every step; the
adapter checks that every request produced exactly the output length.

Per-request TTFT comes from `RequestOutput.metrics`, whose type depends on the version: V1's `RequestStateStats`
(`vllm/v1/metrics/stats.py`: `arrival_time` wall clock + `first_token_latency` seconds) when stats are on
(`disable_log_stats=False`, which EngineArgs, and hence the benchmark, defaults to; the `LLM` class defaults to
True), or V0's `RequestMetrics.first_token_time` (wall clock). Anything else: no TTFT (null).
"""

from __future__ import annotations

import os
import sys

from offline_common import main, read_attributes

# The engine arguments in effect, read back from the engine's VllmConfig (vllm/config: scheduler, cache, model,
# load, parallel, compilation, attention); a path a version lacks is left out.
CONFIG_PATHS = {
    "max_num_seqs": "scheduler_config.max_num_seqs",
    "max_num_batched_tokens": "scheduler_config.max_num_batched_tokens",
    "enable_chunked_prefill": "scheduler_config.enable_chunked_prefill",
    "async_scheduling": "scheduler_config.async_scheduling",
    "gpu_memory_utilization": "cache_config.gpu_memory_utilization",
    "block_size": "cache_config.block_size",
    "num_gpu_blocks": "cache_config.num_gpu_blocks",
    "enable_prefix_caching": "cache_config.enable_prefix_caching",
    "kv_cache_dtype": "cache_config.cache_dtype",
    "enforce_eager": "model_config.enforce_eager",
    "max_model_len": "model_config.max_model_len",
    "dtype": "model_config.dtype",
    "skip_tokenizer_init": "model_config.skip_tokenizer_init",
    "load_format": "load_config.load_format",
    "tensor_parallel_size": "parallel_config.tensor_parallel_size",
    "cudagraph_mode": "compilation_config.cudagraph_mode",
    "max_cudagraph_capture_size": "compilation_config.max_cudagraph_capture_size",
    "attention_backend": "attention_config.backend",
}


def version() -> str | None:
    import vllm

    return getattr(vllm, "__version__", None)


def build(spec: dict):
    from vllm import LLM

    return LLM(**spec["engine_kwargs"])


def first_token_wall(metrics) -> float | None:
    """The wall-clock time of a request's first token from RequestOutput.metrics (see the module docstring)."""
    if metrics is None:
        return None
    arrival, latency = getattr(metrics, "arrival_time", None), getattr(metrics, "first_token_latency", None)
    if arrival and latency:  # V1 RequestStateStats: 0.0 means unset
        return float(arrival) + float(latency)
    first = getattr(metrics, "first_token_time", None)  # V0 RequestMetrics
    return float(first) if first else None


def generate(llm, prompts: list[list[int]], output_len: int, spec: dict) -> list[dict]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(**{**spec["sampling"], "max_tokens": output_len})
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sampling_params=params,
                           use_tqdm=False)  # fmt: skip
    return [
        {
            "prompt_len": None if out.prompt_token_ids is None else len(out.prompt_token_ids),
            "output_len": sum(len(o.token_ids) for o in out.outputs),
            "first_token_wall": first_token_wall(getattr(out, "metrics", None)),
        }
        for out in outputs
    ]


def read_config(llm, spec: dict) -> dict:
    engine = getattr(llm, "llm_engine", None)
    root = getattr(engine, "vllm_config", None) or engine  # V1 keeps a VllmConfig; V0 its parts on the engine
    found = read_attributes(root, CONFIG_PATHS) if root is not None else {}
    if os.environ.get("VLLM_ATTENTION_BACKEND"):  # older versions choose the backend by environment variable
        found["attention_backend_env"] = os.environ["VLLM_ATTENTION_BACKEND"]
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):  # the CPU build's KV cache, GiB
        found["cpu_kvcache_space_gib"] = os.environ["VLLM_CPU_KVCACHE_SPACE"]
    return found


class StepTrace:
    """vLLM's own statistics of every engine step, as its stat loggers receive them (`StatLoggerManager.record`,
    vllm/v1/metrics/loggers.py; `SchedulerStats` and `IterationStats`, vllm/v1/metrics/stats.py): requests running
    and waiting, KV cache usage, and with `enable_logging_iteration_details` the step's prompt (context) and decode
    (generation) requests and tokens and its time in the engine core; preemptions and first tokens from the
    iteration's stats. Reads the manager the engine built (stats are on: disable_log_stats=False); None where this
    version has none. vLLM calls these interfaces unstable: a field a version lacks is left out."""

    SCHEDULER = {"running": "num_running_reqs", "waiting": "num_waiting_reqs", "kv_usage": "kv_cache_usage",
                 "step": "step_counter"}  # fmt: skip
    DETAILS = {"prompt_requests": "num_ctx_requests", "prompt_tokens": "num_ctx_tokens",
               "decode_requests": "num_generation_requests", "decode_tokens": "num_generation_tokens",
               "core_ms": "elapsed_ms"}  # fmt: skip
    ITERATION = {"time": "iteration_timestamp", "generated_tokens": "num_generation_tokens",
                 "preempted": "num_preempted_reqs"}  # fmt: skip

    def __init__(self, llm):
        self.steps: list[dict] | None = None
        manager = getattr(getattr(llm, "llm_engine", None), "logger_manager", None)
        if manager is None or not hasattr(manager, "record"):
            return
        self.steps = []
        original = manager.record

        def record(scheduler_stats=None, iteration_stats=None, *args, **kwargs):
            self.steps.append(self.step(scheduler_stats, iteration_stats))
            return original(scheduler_stats, iteration_stats, *args, **kwargs)

        manager.record = record

    @classmethod
    def step(cls, scheduler_stats, iteration_stats) -> dict:
        step = read_attributes(scheduler_stats, cls.SCHEDULER) if scheduler_stats is not None else {}
        details = getattr(scheduler_stats, "iteration_details", None)
        if details is not None:
            step.update(read_attributes(details, cls.DETAILS))
        if iteration_stats is not None:
            step.update(read_attributes(iteration_stats, cls.ITERATION))
            step["first_tokens"] = len(getattr(iteration_stats, "time_to_first_tokens_iter", []) or [])
        return step

    def take(self) -> list[dict] | None:
        if self.steps is None:
            return None
        steps, self.steps = self.steps, []
        return steps


def reset_cache(llm) -> None:
    """vLLM's prefix cache emptied (`LLM.reset_prefix_cache`, between runs: nothing is running)."""
    if hasattr(llm, "reset_prefix_cache"):
        llm.reset_prefix_cache()


def shutdown(llm) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv, engine_name="vllm", version=version, build=build, generate=generate,
                          read_config=read_config, shutdown=shutdown, trace=StepTrace,
                          reset_cache=reset_cache))  # fmt: skip
