"""`probe`: measure what this machine reaches (matmul FLOP/s, copy bandwidth, the GEMM curve, decode and prefill
attention, launch and step overheads), which harness/probe/entry.py writes as a hardware entry in the format of
perfmodel/data/hardware.toml, so the perfmodel predicts for the machine like for any datasheet GPU (`archscale
predict --hardware FILE` or `--gpu local`).

CPU and CUDA share one code path. Every figure is a median over repeats, warm-up excluded. Kernel rates
(matmul, copy) are timed with CUDA events on a GPU; host-side overheads (tiny op, empty decode step) with
time.perf_counter around a synchronize; on the CPU everything uses time.perf_counter. The GEMM curve, on which
predictions lean most, is sampled several times across the probe (`curve_samples`), each sample between two
timings of the machine reference, and the samples' median is kept with their spread; beside each sample, the GEMM
shape grid (harness/probe/gemm_shapes.py). Where the machine drifted, the curve alone is sampled again until the
median settles (probe_decode.sample_until_settled).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

from harness.probe.decode import (
    DecodeAttention,
    EngineOverheads,
    GemmCurveTimes,
    WeightStreaming,
    decode_attention,
    engine_overheads,
    gemm_curve_times,
    sample_until_settled,
    weight_streaming,
)
from harness.probe.gemm_shapes import GemmShapeTimes, gemm_shape_times
from harness.probe.prefill_attention import PrefillAttentionTimes, prefill_attention_times
from harness.sweep.machine_reference import ReferenceTimes, measure_reference
from perfmodel.errors import ArchscaleInputError

DTYPES = ("float32", "bfloat16", "float16")
PEAK_FIELD = {
    "float32": "peak_fp32_flops_per_s",
    "bfloat16": "peak_bf16_flops_per_s",
    "float16": "peak_fp16_flops_per_s",
}
MiB, GiB = 2**20, 2**30


@dataclass(frozen=True)
class ProbeSizes:
    matmul_shapes: tuple[tuple[int, int, int], ...]  # (m, n, k): [m, k] @ [k, n], smallest first
    copy_bytes: int  # size of the tensor copied (the copy moves twice that)
    warmup: int
    repeats: int
    stream_bytes: int  # weight matrix streamed by F.linear at small M (harness/probe/decode.py)
    curve_config: str  # the preset whose GEMMs give the GEMM curve (`--gemm-config`)
    curve_max_rows: int  # the largest M of that curve (M = 1, 2, 4, ...): compute-bound, prefill-sized
    curve_samples: int  # times the curve is measured, spread over the probe; its median is kept (a drifting VM)
    attention_batch: int  # sequences of the KV-heavy decode that measures decode attention
    attention_kv_lens: tuple[int, int]  # its short and long prompt
    kernel_repeat_s: float  # matmul/copy calls are batched until one repeat lasts about this long
    max_call_s: float  # a matmul slower than this per call stops the larger shapes (slow bf16 on old CPUs)
    # The GEMM shape grid (harness/probe/gemm_shapes.py), sampled with each curve sample: its M, N and K, and the
    # bytes of weight copies each shape cycles through (beyond the last-level cache).
    shape_rows: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    shape_n: tuple[int, ...] = (512, 2048, 8192, 32768)
    shape_k: tuple[int, ...] = (512, 1024, 2048, 4096)
    shape_cold_bytes: int = 128 * MiB
    shape_repeats: int = 3
    # After its `curve_samples`, the curve is sampled again (without the grid) until the median's standard error is at
    # most `curve_settled_pct` at every M, or `curve_max_samples` samples are in (probe_decode.sample_until_settled).
    curve_max_samples: int = 9
    curve_settled_pct: float = 3.0
    # (batch, prompt tokens) of the forward whose causal attention is timed on the curve model's heads
    # (harness/probe/prefill_attention.py): the size sweeps prefill in (a CPU forward of 2048 tokens, a GPU's 8192).
    prefill_attention_shape: tuple[int, int] = (8, 256)


SIZES = {
    ("cpu", False): ProbeSizes(((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (512, 8192, 2048)),
                               256 * MiB, 2, 5, 256 * MiB, "small-base", 2048, 3, 16, (256, 2048), 0.2, 2.0),
    ("cpu", True): ProbeSizes(((64, 64, 64), (128, 128, 128), (256, 256, 256)), 16 * MiB, 1, 3, 16 * MiB,
                              "tiny-gqa4", 64, 2, 4, (64, 512), 0.01, 0.2, (1, 2), (128, 512), (128, 256), 2 * MiB, 1,
                              curve_max_samples=2, prefill_attention_shape=(2, 64)),
    ("cuda", False): ProbeSizes(((2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192), (8192, 14336, 4096)),
                                1 * GiB, 3, 7, 1 * GiB, "llama-3.2-1b", 8192, 3, 64, (1024, 8192), 0.05, 2.0,
                                (1, 2, 4, 8, 16, 32, 64, 128, 256), (1024, 4096, 16384, 65536),
                                (1024, 2048, 4096, 8192), 256 * MiB, 5, prefill_attention_shape=(4, 2048)),
    ("cuda", True): ProbeSizes(((1024, 1024, 1024), (2048, 2048, 2048)), 64 * MiB, 2, 3, 64 * MiB, "qwen3-0.6b",
                               2048, 1, 16, (256, 2048), 0.005, 0.5, (1, 8), (1024, 4096), (1024, 2048), 64 * MiB, 3,
                               curve_max_samples=1, prefill_attention_shape=(2, 512)),
}  # fmt: skip


@dataclass
class MatmulResult:
    m: int
    n: int
    k: int
    flops: float  # 2·m·n·k per call
    time_s: float  # median per call
    flops_per_s: float
    calls_per_repeat: int


@dataclass
class ProbeResult:
    name: str  # the hardware table: "local-cpu" or "local-<gpu name slug>"
    display_name: str
    device: str  # "cpu" or "cuda"
    dtype: str
    quick: bool
    matmuls: list[MatmulResult]
    skipped_shapes: list[tuple[int, int, int]]  # larger shapes left out because one call was too slow
    peak_flops_per_s: float  # the best matmul rate
    copy_bytes: int
    copy_bandwidth_bytes_per_s: float  # (read + write) / time
    launch_overhead_s: float  # per kernel launch the perfmodel counts, from our engine's decode step
    step_overhead_s: float
    engine: EngineOverheads
    streaming: WeightStreaming
    gemm_curve: GemmCurveTimes
    gemm_shapes: GemmShapeTimes  # the shape grid (median of its samples, one beside each curve sample)
    attention: DecodeAttention
    machine_reference: ReferenceTimes  # harness/sweep/machine_reference.py: median of its timings over the probe
    memory_bytes: int
    sm_count: int  # CUDA multiprocessors; CPU: threads torch uses
    warmup: int
    repeats: int
    tf32: bool | None  # fp32 matmuls on CUDA allowed to use TF32 (None on the CPU and for 2-byte dtypes)
    metadata: dict = field(default_factory=dict)
    prefill_attention: PrefillAttentionTimes | None = None  # None: its prior follows compute_efficiency

    @property
    def peak_field(self) -> str:
        return PEAK_FIELD[self.dtype]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(torch, device: str) -> None:
    """One line where `device` is not one the probe measures, or is CUDA without a GPU."""
    if device not in ("cpu", "cuda"):
        raise ArchscaleInputError(f"unknown device '{device}' (known: cpu, cuda)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ArchscaleInputError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU (use --device cpu)")


def default_dtype(device: str) -> str:
    return "float32" if device == "cpu" else "bfloat16"


def slug(text: str) -> str:
    from harness.sweep.results_io import device_slug

    return device_slug(text) or "gpu"


class KernelTimer:
    """Median seconds per call of a function on one device."""

    def __init__(self, torch, device: str, sizes: ProbeSizes):
        self.torch, self.cuda, self.sizes = torch, device == "cuda", sizes

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def once_s(self, fn, calls: int, events: bool) -> float:
        """Seconds for `calls` back-to-back calls, the device drained before and after."""
        self.sync()
        if self.cuda and events:
            start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3  # ms -> s
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        self.sync()
        return time.perf_counter() - t0

    def kernel_s(self, fn, warmup: int | None = None) -> tuple[float, int]:
        """(median seconds per call, calls per repeat) of a device kernel; calls batched to fill a repeat."""
        for _ in range(self.sizes.warmup if warmup is None else warmup):
            fn()
        single_s = self.once_s(fn, 1, events=True)
        calls = max(1, min(1000, math.ceil(self.sizes.kernel_repeat_s / max(single_s, 1e-9))))
        times = [self.once_s(fn, calls, events=True) / calls for _ in range(self.sizes.repeats)]
        return statistics.median(times), calls


def _measure_matmuls(torch, timer: KernelTimer, device: str, dtype, sizes: ProbeSizes):
    results, skipped = [], []
    for i, (m, n, k) in enumerate(sizes.matmul_shapes):
        a = torch.randn(m, k, device=device).to(dtype)  # [m, k]
        b = torch.randn(k, n, device=device).to(dtype)  # [k, n]
        c = torch.empty(m, n, device=device, dtype=dtype)  # [m, n]

        def matmul(a=a, b=b, c=c):
            torch.matmul(a, b, out=c)

        matmul()  # one call to see whether this shape is affordable at all
        timer.sync()
        first_s = timer.once_s(matmul, 1, events=True)
        if first_s > sizes.max_call_s and results:
            skipped.extend(sizes.matmul_shapes[i:])
            break
        time_s, calls = timer.kernel_s(matmul)
        flops = 2.0 * m * n * k
        results.append(MatmulResult(m, n, k, flops, time_s, flops / time_s, calls))
        del a, b, c
    return results, skipped


def _copy_s(torch, timer: KernelTimer, device: str, size_bytes: int) -> float:
    """Median seconds of one device-memory copy of a `size_bytes` tensor (freed on return)."""
    src = torch.randn(size_bytes // 4, device=device)  # [n] float32
    dst = torch.empty_like(src)
    return timer.kernel_s(lambda: dst.copy_(src))[0]


def probe(device: str | None = None, dtype: str | None = None, quick: bool = False,
          gemm_config: str | None = None) -> ProbeResult:  # fmt: skip
    """Measure this machine's achievable matmul rate, copy bandwidth, GEMM curve (on the GEMMs of `gemm_config`, a
    preset name or config.json; default per device, ProbeSizes.curve_config) and overheads on `device` ("cpu" or
    "cuda"; default: cuda if available) at `dtype` (default float32 on the CPU, bfloat16 on CUDA)."""
    import dataclasses

    import torch

    from harness.engines.base import cpu_memory_bytes
    from harness.sweep.metadata import cpu_model, run_metadata
    from perfmodel.presets import resolve_arch

    device = device or default_device()
    check_device(torch, device)
    dtype = dtype or default_dtype(device)
    if dtype not in DTYPES:
        raise ArchscaleInputError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ArchscaleInputError("this GPU has no bfloat16 support: probe it with --dtype float16 or float32")
    sizes = SIZES[(device, quick)]
    torch_dtype = getattr(torch, dtype)
    timer = KernelTimer(torch, device, sizes)
    element_bytes = torch.tensor([], dtype=torch_dtype).element_size()
    curve_arch = dataclasses.replace(resolve_arch(gemm_config or sizes.curve_config), dtype_bytes=element_bytes)

    curve_samples, shape_samples = [], []

    def sample_curve(with_grid: bool = True):  # the first sample finds the largest affordable M; later ones stop there
        max_rows = max(curve_samples[0].time_s) if curve_samples else sizes.curve_max_rows
        with torch.inference_mode():
            curve_samples.append(gemm_curve_times(timer, device, torch_dtype, curve_arch, max_rows, sizes.max_call_s))
            if with_grid:
                shape_samples.append(gemm_shape_times(timer, device, torch_dtype, sizes.shape_rows, sizes.shape_n,
                                                      sizes.shape_k, sizes.shape_cold_bytes, sizes.shape_repeats))  # fmt: skip

    references = [measure_reference(device)]
    with torch.inference_mode():
        matmuls, skipped = _measure_matmuls(torch, timer, device, torch_dtype, sizes)
        copy_s = _copy_s(torch, timer, device, sizes.copy_bytes)
        peak = max(r.flops_per_s for r in matmuls)
        streaming = weight_streaming(timer, device, torch_dtype, sizes.stream_bytes)
    sample_curve()
    engine = engine_overheads(device, dtype)
    if sizes.curve_samples > 2:  # the samples spread over the probe: one between the overheads and the attention
        sample_curve()
    attention = decode_attention(device, dtype, sizes.attention_batch, sizes.attention_kv_lens)
    with torch.inference_mode():
        prefill_attention = prefill_attention_times(timer, device, torch_dtype, curve_arch,
                                                    *sizes.prefill_attention_shape)  # fmt: skip
    while len(curve_samples) < sizes.curve_samples:
        sample_curve()
    curve = sample_until_settled(lambda: sample_curve(with_grid=False), curve_samples, sizes.curve_max_samples,
                                 sizes.curve_settled_pct)  # fmt: skip
    references.append(measure_reference(device))
    machine_reference = ReferenceTimes.median_of([*references, *curve.sample_references])

    if device == "cuda":
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        name, display_name = f"local-{slug(props.name)}", props.name
        memory_bytes, sm_count = int(props.total_memory), int(props.multi_processor_count)
        tf32 = bool(torch.backends.cuda.matmul.allow_tf32) if dtype == "float32" else None
        torch.cuda.empty_cache()
    else:
        name, display_name = "local-cpu", f"{cpu_model() or 'CPU'}, {os.cpu_count()} logical CPUs"
        memory_bytes, sm_count, tf32 = cpu_memory_bytes(), int(torch.get_num_threads()), None
    return ProbeResult(
        name=name,
        display_name=display_name,
        device=device,
        dtype=dtype,
        quick=quick,
        matmuls=matmuls,
        skipped_shapes=list(skipped),
        peak_flops_per_s=peak,
        copy_bytes=sizes.copy_bytes,
        copy_bandwidth_bytes_per_s=2 * sizes.copy_bytes / copy_s,
        launch_overhead_s=engine.launch_overhead_s,
        step_overhead_s=engine.step_overhead_s,
        engine=engine,
        streaming=streaming,
        gemm_curve=curve,
        gemm_shapes=GemmShapeTimes.median_of(shape_samples),
        attention=attention,
        machine_reference=machine_reference,
        memory_bytes=memory_bytes,
        sm_count=sm_count,
        warmup=sizes.warmup,
        repeats=sizes.repeats,
        tf32=tf32,
        metadata={k: v for k, v in run_metadata().items() if v is not None},  # TOML has no null
        prefill_attention=prefill_attention,
    )
