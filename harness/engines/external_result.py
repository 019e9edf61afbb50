"""An external engine's worker, read: its result JSON (or how it ended without one) → the point's `Measurement`.

What the adapter (harness/engines/external.py) reads back from a vLLM / SGLang worker: output tokens/s = batch ·
output_len / wall time of the `generate` call, total tokens/s with the prompts, TTFT mean / p50 / p99 over requests
where the engine reports first-token times, the medians over the timed runs; every request's prompt and output length
checked; a CUDA OOM — reported, or found in the worker's log when an engine's helper process died of it — is status
"oom", any other failure "error" with its first line.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from harness.engines.base import Measurement, Workload


@dataclass
class ExternalMeasurement(Measurement):
    """A Measurement with what an external engine adds to its row: the engine's version, the keyword arguments it
    was built with and those in effect as it reports them, and the interpreter and torch it ran with."""

    engine_version: str | None = None
    engine_kwargs: dict = field(default_factory=dict)  # everything passed to LLM(...) / Engine(...)
    engine_config: dict = field(default_factory=dict)  # the arguments in effect, as the engine reports them
    engine_env: dict = field(default_factory=dict)
    peak_memory_method: str | None = None  # how peak_memory_bytes was read (NVML, or torch's mem_get_info)
    engine_init_s: float | None = None  # building the engine: load, profiling, graph capture
    engine_points_before: int | None = None  # points the same engine served before this one (0: a fresh engine)
    engine_point_s: float | None = None  # the point in the worker: its warm-up and timed runs
    warmup_s: float | None = None
    scheduler: dict | None = None  # what the engine's scheduler did in the first timed run (`scheduler_summary`)
    scheduler_steps: list | None = None  # every step of every timed run, as the engine reported it (the sweep keeps
    # them beside its file, harness/sweep/points.py)


@dataclass
class WorkerOutcome:
    """How a worker process ended: its exit code (None: killed before one), whether it ran out of time, and the last
    LOG_TAIL_LINES lines of its log."""

    returncode: int | None
    timed_out: bool
    timeout_s: float
    log_tail: list[str]


def measurement_from(engine: str, workload: Workload, text: str | None, outcome: WorkerOutcome) -> Measurement:
    """The point's measurement from the worker's result (None: it wrote none) and how the worker ended."""
    if text is None:
        if outcome.timed_out:
            return ExternalMeasurement(status="error", message=f"the {engine} worker timed out after "
                                       f"{outcome.timeout_s:g} s without a result")  # fmt: skip
        oom = _oom_line(outcome.log_tail)
        if oom:
            return ExternalMeasurement(status="oom", message=oom)
        last = next((line.strip() for line in reversed(outcome.log_tail) if line.strip()), "no output")
        return ExternalMeasurement(status="error", message=f"the {engine} worker exited with code "
                                   f"{outcome.returncode} before writing a result: {last}"[:500])  # fmt: skip
    return parse_result(text, workload, engine, outcome.log_tail)


def _oom_line(lines: list[str]) -> str | None:
    from harness.engines.workers.offline_common import OOM_MARKERS

    for line in reversed(lines):
        if any(marker in line.lower() for marker in OOM_MARKERS):
            return line.strip()[:500]
    return None


def _nearest_rank(sorted_values: list[float], quantile: float) -> float:
    from perfmodel.estimator import nearest_rank

    return sorted_values[int(nearest_rank(quantile, len(sorted_values)))]


def scheduler_summary(steps: list[dict] | None) -> dict | None:
    """A run's steps as the engine's scheduler reported them, summed: steps taken, prompt and decode tokens scheduled,
    the most requests running and waiting at once, preemptions, the highest KV cache usage, the engine core's time,
    the steps that carried prompt tokens, and each request's first token counted in steps (mean, p50, p99). None
    without steps."""
    if not steps:
        return None

    def total(key):
        values = [s[key] for s in steps if s.get(key) is not None]
        return sum(values) if values else None

    def most(key):
        values = [s[key] for s in steps if s.get(key) is not None]
        return max(values) if values else None

    scheduled = [s for s in steps if (s.get("prompt_tokens") or 0) + (s.get("decode_tokens") or 0) > 0]
    steps = scheduled if scheduled or any("prompt_tokens" in s for s in steps) else steps  # stats without work: out
    core_ms = total("core_ms")
    # the step (1-based) that gave each request its first token: TTFT counted in steps
    firsts = sorted(k + 1 for k, s in enumerate(steps) for _ in range(s.get("first_tokens") or 0))
    ttft_steps = {"ttft_steps_mean": statistics.fmean(firsts), "ttft_steps_p50": _nearest_rank(firsts, 0.5),
                  "ttft_steps_p99": _nearest_rank(firsts, 0.99)} if firsts else {}  # fmt: skip
    return {
        **ttft_steps,
        "steps": len(steps),
        "prompt_tokens": total("prompt_tokens"),
        "decode_tokens": total("decode_tokens"),
        "max_running": most("running"),
        "max_waiting": most("waiting"),
        "preemptions": total("preempted"),
        "max_kv_usage": most("kv_usage"),
        "core_s": None if core_ms is None else core_ms / 1000,
        "steps_with_prompts": sum(1 for s in steps if s.get("prompt_tokens")),
    }


def summarize_run(run: dict, workload: Workload) -> dict:
    """One timed run's figures, with the keys of our engine's runs (module docstring for their meaning)."""
    elapsed = run["elapsed_s"]
    b, i, o = workload.batch_size, workload.input_len, workload.output_len
    ttfts = sorted(run["ttft_s"]) if run.get("ttft_s") else None
    return {
        "output_tokens_per_s": b * o / elapsed,
        "total_tokens_per_s": b * (i + o) / elapsed,
        "ttft_s": statistics.fmean(ttfts) if ttfts else None,
        "ttft_p50_s": _nearest_rank(ttfts, 0.5) if ttfts else None,
        "ttft_p99_s": _nearest_rank(ttfts, 0.99) if ttfts else None,
        "prefill_time_s": None,
        "tpot_s": None,
        "total_time_s": elapsed,
    }


def _length_error(engine: str, what: str, lengths: list, expected: int, count: int) -> str | None:
    if len(lengths) != count:
        return f"{engine} returned {len(lengths)} requests, expected {count}"
    wrong = [n for n in lengths if n is not None and n != expected]
    if not wrong:
        return None
    shown = sorted(set(wrong))
    span = f"{shown[0]}" if len(shown) == 1 else f"{shown[0]}..{shown[-1]}"
    return (f"{engine} returned {what} of {span} tokens for {len(wrong)} of {count} requests, expected {expected} "
            "each" + (" (ignore_eos not honoured?)" if what == "outputs" else ""))  # fmt: skip


def parse_result(text: str, workload: Workload, engine: str, log_tail: list[str] = ()) -> ExternalMeasurement:
    """A worker's result JSON → the point's measurement (see the module docstring); every request's lengths
    checked. `log_tail`: the worker log's last lines; an error whose cause the log shows as an OOM (an engine's
    helper process died of it, which the frontend reports only as a dead engine) becomes status oom."""
    try:
        result = json.loads(text)
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return ExternalMeasurement(status="error", message=f"the {engine} worker's result is not JSON ({exc})")
    about = {"engine_version": result.get("engine_version"), "engine_config": result.get("engine_config") or {},
             "engine_env": result.get("engine_env") or {}, "engine_init_s": result.get("init_s"),
             "engine_points_before": result.get("points_served_before"), "engine_point_s": result.get("point_s"),
             "warmup_s": result.get("warmup_s")}  # fmt: skip
    if result.get("status") != "ok":
        status = "oom" if result.get("status") == "oom" else "error"
        message = str(result.get("message") or "no message")[:500]
        oom = _oom_line(list(log_tail)) if status == "error" else None
        return ExternalMeasurement(status="oom" if oom else status, message=oom or message, **about)
    runs = result.get("runs") or []
    if not runs:
        return ExternalMeasurement(status="error", message=f"the {engine} worker reported no timed run", **about)
    for run in runs:
        problem = (_length_error(engine, "outputs", run["output_lens"], workload.output_len, workload.batch_size)
                   or _length_error(engine, "prompts", run["prompt_lens"], workload.input_len, workload.batch_size))  # fmt: skip
        if problem:
            return ExternalMeasurement(status="error", message=problem, **about)
        if not run["elapsed_s"] > 0:
            return ExternalMeasurement(status="error", message=f"{engine}: a timed run took {run['elapsed_s']} s",
                                       **about)  # fmt: skip
    summaries = [summarize_run(run, workload) for run in runs]
    steps = [run.get("steps") for run in runs]
    if any(steps):
        about |= {"scheduler": scheduler_summary(steps[0]), "scheduler_steps": steps}
    medians = {key: None if any(s[key] is None for s in summaries) else statistics.median(s[key] for s in summaries)
               for key in summaries[0]}  # fmt: skip
    return ExternalMeasurement(status="ok", peak_memory_bytes=result.get("peak_memory_bytes"), runs=summaries,
                               peak_memory_method=result.get("memory_method"), **medians, **about)  # fmt: skip
