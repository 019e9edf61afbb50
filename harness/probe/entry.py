"""The hardware entry `archscale probe` writes: its measurements (harness/probe/measure.py) as a TOML table in the format of
perfmodel/data/hardware.toml, with the torch engine's priors derived from them and a source line per figure. The TOML
is written by hand (no writer dependency), to a temporary file in the target folder that is read back with tomllib
(and checked by `load_hardware_file`) before it atomically replaces the target.
"""

from __future__ import annotations

from pathlib import Path

from harness.engines.base import MEMORY_POLICY
from harness.probe.decode import SMALL_GEMM_ROWS, gemm_curve
from harness.probe.gemm_shapes import gemm_shape_factors
from harness.probe.measure import MiB, ProbeResult
from harness.toml_io import dumps, write_atomic
from perfmodel.errors import ArchscaleInputError
from perfmodel.hardware import default_probe_path, load_hardware_file


def bandwidth_bytes_per_s(result: ProbeResult) -> float:
    """The entry's bandwidth: the faster of the copy and the GEMV weight stream (a copy's bytes count read and write;
    decode mostly reads)."""
    return max(result.copy_bandwidth_bytes_per_s, result.streaming.gemv_bandwidth_bytes_per_s)


def calibration_priors(result: ProbeResult) -> dict:
    """The torch engine's priors on this machine. GEMMs follow the measured curve (`gemm_curve`), which replaces the
    two-number small-M model (GEMV regime, M½) of datasheet entries, with the shape grid (`gemm_shape_factors`) beside
    it."""
    streaming, bandwidth = result.streaming, bandwidth_bytes_per_s(result)
    memory_efficiency = min(streaming.small_gemm_bandwidth_bytes_per_s / bandwidth, 1.0)
    rows, factors = gemm_curve(result.gemm_curve, result.peak_flops_per_s, bandwidth, memory_efficiency)
    grid = result.gemm_shapes
    shape_factors = gemm_shape_factors(grid, result.gemm_curve.arch, result.peak_flops_per_s, bandwidth,
                                       memory_efficiency)  # fmt: skip
    prefill = result.prefill_attention
    return {
        "compute_efficiency": 1.0,
        "memory_efficiency": memory_efficiency,
        **(
            {}
            if prefill is None
            else {"attention_prefill_compute_efficiency": prefill.efficiency(result.peak_flops_per_s)}
        ),
        "attention_decode_memory_efficiency": min(result.attention.bandwidth_bytes_per_s() / bandwidth, 1.0),
        "gemm_curve_rows": rows,
        "gemm_curve_factors": factors,
        "gemm_shape_rows": [float(m) for m in grid.rows],
        "gemm_shape_n": [float(n) for n in grid.n_values],
        "gemm_shape_k": [float(k) for k in grid.k_values],
        "gemm_shape_factors": shape_factors.tolist(),
        "kernel_launch_overhead_s": result.launch_overhead_s,
        "step_overhead_s": result.step_overhead_s,
        "gpu_memory_utilization": MEMORY_POLICY[result.device]["memory_utilization"],
        "workspace_bytes": MEMORY_POLICY[result.device]["workspace_bytes"],
        "calibrated": False,
    }


def _sources(result: ProbeResult) -> dict:
    by = "measured by archscale probe"
    stats = f"median of {result.repeats} repeats after {result.warmup} warm-up"
    stats += " (--quick sizes)" if result.quick else ""
    shapes = ", ".join(f"{r.m}x{r.n}x{r.k} {r.flops_per_s / 1e9:,.1f} GFLOP/s" for r in result.matmuls)
    if result.skipped_shapes:
        shapes += "; skipped (one call too slow): " + ", ".join("x".join(map(str, s)) for s in result.skipped_shapes)
    tf32 = "" if result.tf32 is None else f", TF32 {'allowed' if result.tf32 else 'off'}"
    copy_mib = result.copy_bytes // MiB
    stream, engine = result.streaming, result.engine
    rates = ", ".join(f"M={m} {stream.weight_bytes / t / 1e9:,.1f} GB/s" for m, t in stream.stream_time_s.items())
    steps = ", ".join(f"{depth}: {s * 1e6:,.0f} µs" for depth, s in engine.step_s_by_depth.items())
    curve, att = result.gemm_curve, result.attention
    times = ", ".join(f"M={m} {t * 1e3:,.3g} ms" for m, t in curve.time_s.items())
    if curve.skipped_rows:
        times += f" (M >= {curve.skipped_rows[0]} skipped: one pass too slow)"
    samples = len(curve.sample_time_s)
    spread = ", ".join(f"M={m} {pct:.0f}%" for m, pct in curve.spread_pct().items())
    error = ", ".join(f"M={m} {pct:.1f}%" for m, pct in curve.median_uncertainty_pct().items())
    curve_stats = (
        f"{stats}; the median of {samples} samples spread over the probe, the last ones taken until the median "
        f"settled (slowest − fastest sample over the median: {spread}; the median's standard error: {error})"
        if samples > 1
        else stats
    )
    sources = {
        "hbm_bandwidth_bytes_per_s": f"{by}: the faster of a {result.device} memory copy dst.copy_(src) of a "
        f"{copy_mib} MiB float32 tensor (read + write = {2 * copy_mib} MiB per copy: "
        f"{result.copy_bandwidth_bytes_per_s / 1e9:,.1f} GB/s) and F.linear of 1 row against a "
        f"{stream.weight_bytes // MiB} MiB weight ({stream.gemv_bandwidth_bytes_per_s / 1e9:,.1f} GB/s of reads), {stats}",
        result.peak_field: f"{by}: best {result.dtype} torch.matmul over m x n x k shapes {shapes}{tf32}, {stats}",
        "compute_efficiency": "1.0: the peak above is a measured achievable rate, not a datasheet figure",
        "memory_efficiency": f"{by}: F.linear of {SMALL_GEMM_ROWS} rows against the same weight, {rates}, over the "
        "bandwidth above",
        "gemm_curve_rows": f"{by}: one pass over every GEMM of {curve.arch.name} (q/k/v, o, the MLP with its SiLU·mul, "
        f"the LM head; {curve.arch.n_layer} layers, {curve.weight_bytes / MiB:,.0f} MiB of {result.dtype} weights) at M "
        f"rows, M = 1, 2, 4, ..., {curve_stats}",
        "gemm_curve_factors": f"{by}: at each M above, the perfmodel's roofline time of those GEMMs at the peak and at "
        f"memory_efficiency over the measured time ({times}): the priors predict the probe's own pass exactly",
        **_shape_grid_sources(result),
        "attention_decode_memory_efficiency": f"{by}: our engine's decode step on {att.arch.name} ({att.arch.n_layer} "
        f"layers, {att.arch.n_kv_head} KV heads of {att.arch.d_head}) at batch {att.batch} after {att.kv_lens[0]} and "
        f"{att.kv_lens[1]} prompt tokens ({att.step_s[0] * 1e3:,.3g} and {att.step_s[1] * 1e3:,.3g} ms): the extra "
        f"{att.kv_bytes_per_step / MiB:,.0f} MiB of KV cache read per step over the extra time "
        f"({att.bandwidth_bytes_per_s() / 1e9:,.1f} GB/s), over the bandwidth above",
        **_prefill_attention_sources(result),
        "kernel_launch_overhead_s": f"{by}: our engine's decode step (harness/engines) on tiny models of "
        f"{' and '.join(map(str, engine.step_s_by_depth))} layers ({steps}): the step time per launch the perfmodel "
        "counts, from the difference of the two depths",
        "step_overhead_s": f"{by}: the same two decode steps, what is left of the shallow one after its launches",
        "machine_reference": f"{by}: harness/sweep/machine_reference.py (the fixed GEMM and memory stream every sweep point "
        "times around itself), the median of its timings at the probe's start and end and around each GEMM curve "
        "sample: the machine state these rates were measured in, which `compare --drift-correct` brings measurements to",
    }
    props = "torch.cuda.get_device_properties()"
    if result.device == "cuda":
        return sources | {
            "display_name": f"{props}.name",
            "memory_bytes": f"{props}.total_memory",
            "sm_count": f"{props}.multi_processor_count",
            "gpu_memory_utilization": "0.90: vLLM's default gpu_memory_utilization, as calibration.toml's priors",
            "workspace_bytes": "2 GiB: calibration.toml's prior (activations, CUDA graphs, allocator slack)",
        }
    return sources | {
        "display_name": "/proc/cpuinfo model name, os.cpu_count()",
        "memory_bytes": "/proc/meminfo MemTotal",
        "sm_count": "torch.get_num_threads() (CPU threads torch uses, not SMs)",
        "gpu_memory_utilization": "0.5 (a prior): system RAM is shared with the OS and other processes and no engine "
        "reserves a fixed share of it, so half of MemTotal is a conservative budget for weights + KV cache",
        "workspace_bytes": "256 MiB (a prior): activations and allocator slack of small CPU runs",
    }


def _prefill_attention_sources(result: ProbeResult) -> dict:
    prefill = result.prefill_attention
    if prefill is None:
        return {}
    arch = prefill.arch
    return {
        "attention_prefill_compute_efficiency": "measured by archscale probe: our engine's causal prefill attention "
        f"(harness.engines.llama.causal_prefill_attention) on {arch.name}'s heads ({arch.n_head} query, "
        f"{arch.n_kv_head} KV, head dim {arch.d_head}) for {prefill.batch} prompts of {prefill.input_len} tokens, one "
        f"layer: {prefill.layer_s * 1e3:,.3g} ms, {prefill.flops_per_s() / 1e9:,.1f} GFLOP/s of the perfmodel's "
        "causal FLOPs, over the peak above"
    }


def _shape_grid_sources(result: ProbeResult) -> dict:
    by, grid = "measured by archscale probe", result.gemm_shapes
    samples = len(grid.sample_time_s)
    sampled = (
        f"; the median of {samples} samples, one beside each curve sample (largest spread {grid.spread_pct():.0f}%)"
    )
    axes = "F.linear of M rows against an [N, K] weight at every M, N, K of the gemm_shape_* axes"
    return {
        "gemm_shape_rows": f"{by}: {axes}, each shape cycled from {grid.cold_bytes // MiB} MiB or more of weight copies "
        f"(beyond the caches, as a model's layers are), all shapes at one M before the next; median of "
        f"{grid.repeats} repeats{sampled if samples > 1 else ''}",
        "gemm_shape_factors": f"{by}: at each grid point the roofline time of that GEMM (peak, memory_efficiency) over "
        f"its measured time, divided by the same for {result.gemm_curve.arch.name}'s GEMMs as the grid predicts them "
        "(perfmodel/gemm_shapes.py): 1 = as fast as the GEMM curve's model, which the curve then keeps predicting",
    }


def hardware_toml(result: ProbeResult) -> str:
    """The hardware entry as TOML text, in the format of perfmodel/data/hardware.toml."""
    entry = {
        "display_name": result.display_name,
        "measured": True,
        "hbm_bandwidth_bytes_per_s": float(bandwidth_bytes_per_s(result)),
        result.peak_field: float(result.peak_flops_per_s),
        "memory_bytes": int(result.memory_bytes),
        "sm_count": int(result.sm_count),
    }
    lines = [
        f"# Hardware entry written by `archscale probe` ({result.device}, {result.dtype}"
        + (", --quick" if result.quick else "") + "): rates this machine reached, not datasheet peaks.",
        "# Format: perfmodel/data/hardware.toml. Use it with `archscale predict --hardware FILE` (or `--gpu local`).",
        "# Its priors come from the same measurements (the decode-shaped ones: harness/probe/decode.py); calibrated = false.",
        "",
    ]  # fmt: skip
    reference = {"gemm_s": result.machine_reference.gemm_s, "stream_s": result.machine_reference.stream_s}
    tables = {result.name: {**entry, "machine_reference": reference, "sources": _sources(result),
                            "calibration": {"torch": calibration_priors(result)}, "metadata": result.metadata}}  # fmt: skip
    return "\n".join(lines) + "\n" + dumps(tables)


def write_hardware_file(result: ProbeResult, path: str | Path | None = None) -> Path:
    """Write the entry atomically; it is read back and checked by `load_hardware_file` before it replaces `path`."""

    def reads_back(tmp):
        try:
            load_hardware_file(tmp)  # tomllib + every field checked, before the target is touched
        except ArchscaleInputError as exc:
            raise RuntimeError(f"the probe wrote a hardware entry that does not read back: {exc}") from exc

    return write_atomic(path if path is not None else default_probe_path(), hardware_toml(result), check=reads_back)
