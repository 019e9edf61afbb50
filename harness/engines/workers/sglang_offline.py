"""SGLang worker: one sweep point through SGLang's offline Engine, in SGLang's own environment (never imports
archscale).

    ENGINE_PYTHON sglang_offline.py SPEC.json

As `sglang/benchmark/offline_throughput.py` (SGLang 0.5.23; `sglang.bench_offline_throughput` before):
`Engine(**server_args)`, sampling `{"temperature": 0, "max_new_tokens": O, "ignore_eos": True}` and the time of one
`engine.generate(...)` call over all requests (`throughput_test_once`). Unlike that script we pass token ids
(`generate(input_ids=...)`) with `skip_tokenizer_init=True`, so nothing loads a tokenizer, and never use its
"random" dataset or its warm-up requests, which fetch ShareGPT from the Hugging Face hub unless given a local file.
Like the script we set no `min_new_tokens`: with `ignore_eos` only `max_new_tokens` ends a request, and SGLang's
BatchedMinNewTokensPenalizer (sampling/penaltylib/min_new_tokens.py) would run every step and reads the request's
tokenizer (its eos and extra stop ids), which we do not load; the adapter checks every request's output length.

Per-request TTFT: SGLang's TokenizerManager puts `prefill_finished_ts` (wall clock, the first token's arrival) in a
request's `meta_info` only with `enable_metrics=True` (`_calculate_timing_metrics`); without it the TTFT is null.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import sys

from offline_common import jsonable, main

# ServerArgs fields that shape throughput (python/sglang/srt/server_args.py), read back after the engine resolved
# its defaults; the scheduler's own figures (max_total_num_tokens, the effective max_running_requests) come from
# get_server_info()'s internal_states when the version reports them.
CONFIG_KEYS = (
    "max_running_requests", "max_total_tokens", "max_total_num_tokens", "chunked_prefill_size", "max_prefill_tokens",
    "mem_fraction_static", "disable_cuda_graph", "cuda_graph_max_bs", "attention_backend",
    "prefill_attention_backend", "decode_attention_backend", "sampling_backend", "page_size", "disable_radix_cache",
    "schedule_policy", "enable_mixed_chunk", "disable_overlap_schedule", "context_length", "dtype", "kv_cache_dtype",
    "tp_size", "load_format", "skip_tokenizer_init", "enable_metrics",
)  # fmt: skip
FIRST_TOKEN_KEYS = ("prefill_finished_ts",)  # meta_info keys holding the first token's wall-clock time


def version() -> str | None:
    import sglang

    return getattr(sglang, "__version__", None)


def build(spec: dict):
    import sglang

    return sglang.Engine(**spec["engine_kwargs"])


def generate(engine, prompts: list[list[int]], output_len: int, spec: dict) -> list[dict]:
    params = {**spec["sampling"], "max_new_tokens": output_len}
    outputs = engine.generate(input_ids=prompts, sampling_params=params)
    if isinstance(outputs, dict):  # a single request comes back unwrapped
        outputs = [outputs]
    requests = []
    for out in outputs:
        meta = out.get("meta_info") or {}
        ids = out.get("output_ids")
        first = next((meta[k] for k in FIRST_TOKEN_KEYS if meta.get(k)), None)
        requests.append({
            "prompt_len": meta.get("prompt_tokens"),
            "output_len": meta["completion_tokens"] if "completion_tokens" in meta else len(ids or ()),
            "first_token_wall": None if first is None else float(first),
        })  # fmt: skip
    return requests


def read_config(engine, spec: dict) -> dict:
    values = {}
    server_args = getattr(engine, "server_args", None)
    if dataclasses.is_dataclass(server_args):
        values.update(dataclasses.asdict(server_args))
    try:
        info = engine.get_server_info()
        if inspect.isawaitable(info):
            info = asyncio.run(info)
        values.update(info)
        states = info.get("internal_states") or [{}]
        values.update(states[0] if isinstance(states[0], dict) else {})
    except Exception:  # an older Engine without get_server_info: the server args alone
        pass
    return {key: jsonable(values[key]) for key in CONFIG_KEYS if key in values}


def reset_cache(engine) -> None:
    """SGLang's radix (prefix) cache emptied (`Engine.flush_cache`, between runs: nothing is running)."""
    if hasattr(engine, "flush_cache"):
        engine.flush_cache()


def shutdown(engine) -> None:
    engine.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv, engine_name="sglang", version=version, build=build, generate=generate,
                          read_config=read_config, shutdown=shutdown, reset_cache=reset_cache))  # fmt: skip
