"""The engine protocol: what every serving engine (ours in torch; the vLLM and SGLang adapters) takes and returns.

An engine serves one `Workload` — `batch_size` requests of `input_len` prompt tokens and `output_len` generated
tokens, all queued at once, exactly as the perfmodel's workload describes it — for one architecture, and returns a
`Measurement`. Both are plain dataclasses, so they pickle across process boundaries (one process or Ray task per
point). Engines import their heavy dependencies inside `run`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Protocol

from perfmodel.arch import Arch


@dataclass(frozen=True)
class Workload:
    batch_size: int
    input_len: int
    output_len: int


# The KV-cache budget policy per device when no hardware entry gives one: the share of device memory the engine may
# use and what it keeps free. CUDA: vLLM's default gpu_memory_utilization and calibration.toml's 2 GiB workspace;
# CPU: RAM is shared with the OS and no engine reserves a fixed share of it, so half of MemTotal, 256 MiB kept free.
def cpu_memory_bytes() -> int:
    """MemTotal from /proc/meminfo, else pages × page size."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


MEMORY_POLICY = {
    "cuda": {"memory_utilization": 0.9, "workspace_bytes": 2 * 2**30},
    "cpu": {"memory_utilization": 0.5, "workspace_bytes": 256 * 2**20},
}


@dataclass(frozen=True)
class EngineOptions:
    """How to run: device, compute dtype, decode attention backend, KV-cache policy and measurement repeats.

    The last three are for the external engines (vLLM, SGLang; harness.engines.external) and stay None for ours:
    `engine_args`, the keyword arguments passed to the engine as given (its defaults otherwise), `engine_python`,
    the interpreter of the engine's environment, `engine_timeout_s`, the most one point may take there."""

    device: str = "cpu"  # "cpu" or "cuda"
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    attention: str = "torch"  # "torch" (SDPA) | "triton" (kernels.gqa_decode)
    cuda_graph: bool = True  # decode step in a CUDA graph (CUDA + triton attention only)
    block_size: int = 16  # tokens per KV-cache page
    max_prefill_tokens: int = (
        8192  # prompt tokens per prefill forward (whole sequences; as vLLM's max_num_batched_tokens)
    )
    memory_utilization: float = 0.9  # share of device memory the engine may use (vLLM's gpu_memory_utilization)
    workspace_bytes: int = 2**30  # kept free for activations, graphs and allocator slack
    repeats: int = 1  # timed runs after one warm-up; medians are reported
    seed: int = 0
    engine_args: dict | None = None
    engine_python: str | None = None
    engine_timeout_s: float | None = None

    def to_dict(self) -> dict:
        """The options as a sweep row records them: the fields that apply (an external engine's are left out of
        our engine's rows, which stay as they were)."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass
class Measurement:
    """One served workload. Times in seconds; medians over `repeats` timed runs, per-run values in `runs`.

    ttft_s: mean time to first token over requests, from the moment all were queued (a later wave's requests include
    their wait), as serving benchmarks report it; ttft_p50_s / ttft_p99_s: its nearest-rank percentiles;
    prefill_time_s: the prefill of one full wave (all its forwards); tpot_s: mean decode step time of a full wave;
    output/total tokens per second over the whole workload (all waves), prompt tokens counted in total.
    """

    status: str  # "ok" | "oom" | "error"
    message: str = ""
    output_tokens_per_s: float | None = None
    total_tokens_per_s: float | None = None
    ttft_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p99_s: float | None = None
    prefill_time_s: float | None = None
    tpot_s: float | None = None
    total_time_s: float | None = None
    peak_memory_bytes: int | None = None
    concurrency: int | None = None  # sequences served at once (a wave)
    waves: int | None = None
    runs: list[dict] = field(default_factory=list)  # per repeat: the same timing keys

    def to_dict(self) -> dict:
        return asdict(self)


class Engine(Protocol):
    name: str

    def run(self, arch: Arch, workload: Workload, options: EngineOptions) -> Measurement: ...
