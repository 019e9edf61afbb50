"""`archscale probe` on the CPU (--quick): positive figures, a hardware entry that loads and predicts, the
hand-written TOML, and one-line errors. The CUDA path runs only where a GPU is (mark `gpu`)."""

import contextlib
import io
import json
import math
import shutil
import tomllib
from dataclasses import replace

import numpy as np
import pytest

from harness.cli.main import main
from harness.cli.probe import curve_spread_line, format_summary
from harness.probe.decode import (
    GEMM_OPS,
    DecodeAttention,
    EngineOverheads,
    GemmCurveTimes,
    WeightStreaming,
    gemm_roofline_s,
    sample_until_settled,
)
from harness.probe.entry import hardware_toml, write_hardware_file
from harness.probe.gemm_shapes import GemmShapeTimes, single_gemm_roofline_s
from harness.probe.measure import MatmulResult, ProbeResult, probe, slug
from harness.sweep.machine_reference import ReferenceTimes
from harness.toml_io import toml_value
from perfmodel import PRESETS, ArchscaleInputError
from perfmodel.hardware import load_hardware_file

CONFIG = "tiny-mha" if "tiny-mha" in PRESETS else "qwen3-0.6b"
PREDICT = ["--batch-size", "1,4", "--input-len", "32", "--output-len", "8", "--json"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def result():
    return probe("cpu", "float32", quick=True)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """The CLI run once: (path of the entry it wrote, its --json output)."""
    path = tmp_path_factory.mktemp("probe") / "local.toml"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["probe", "--device", "cpu", "--quick", "--json", "--out", str(path)]) == 0
    return path, json.loads(stdout.getvalue())


def test_probe_returns_positive_finite_figures(result):
    figures = (result.peak_flops_per_s, result.copy_bandwidth_bytes_per_s, result.launch_overhead_s,
               result.memory_bytes, result.sm_count, result.streaming.gemv_bandwidth_bytes_per_s,
               *result.gemm_curve.time_s.values())  # fmt: skip
    assert all(math.isfinite(x) and x > 0 for x in figures)
    # the step overhead is what is left of a shallow step after its launches: small, possibly 0 within noise
    assert math.isfinite(result.step_overhead_s) and result.step_overhead_s >= 0
    depths = result.engine.step_s_by_depth
    assert depths[8] > depths[2] > 0  # the deeper tiny model takes longer per step
    assert (result.name, result.device, result.dtype, result.peak_field) == ("local-cpu", "cpu", "float32",
                                                                            "peak_fp32_flops_per_s")  # fmt: skip
    assert len(result.matmuls) >= 2 and result.peak_flops_per_s == max(r.flops_per_s for r in result.matmuls)
    assert all(r.flops == 2 * r.m * r.n * r.k and r.time_s > 0 for r in result.matmuls)
    assert None not in result.metadata.values() and result.metadata["cpu_count_logical"] >= 1
    grid = result.gemm_shapes  # --quick: 2 M × 2 N × 2 K, one sample beside each of the 2 curve samples
    assert grid.time_s.shape == (2, 2, 2) and np.all(grid.time_s > 0) and len(grid.sample_time_s) == 2


def test_shape_grid_samples_combine_by_median_per_point():
    one = GemmShapeTimes((1,), (512,), (256, 512), np.array([[[1.0, 2.0]]]), 4, 2**20, 3)
    samples = [replace(one, time_s=one.time_s * f, sample_time_s=[one.time_s * f]) for f in (1.0, 1.5, 0.9)]
    grid = GemmShapeTimes.median_of(samples)
    assert grid.time_s == pytest.approx(np.array([[[1.0, 2.0]]])) and len(grid.sample_time_s) == 3
    assert grid.spread_pct() == pytest.approx(60.0)  # (1.5 − 0.9) / 1.0
    assert one.spread_pct() == 0.0


def test_the_curve_is_the_median_of_samples_spread_over_the_probe(result, probed):
    """--quick samples the GEMM curve twice, each between two timings of the machine reference; the entry keeps the
    samples' median per M, and the probe's machine state is the median of every reference timing it took."""
    curve = result.gemm_curve
    assert len(curve.sample_time_s) == len(curve.sample_references) == 2
    for rows, time_s in curve.time_s.items():
        assert time_s == pytest.approx(sum(s[rows] for s in curve.sample_time_s) / 2)  # the median of two
    timings = (*(r.gemm_s for r in curve.sample_references), result.machine_reference.gemm_s)
    assert all(t > 0 and math.isfinite(t) for t in timings)
    assert min(timings[:2]) / 4 < result.machine_reference.gemm_s < 4 * max(timings[:2])  # one machine state
    path, _ = probed
    assert "the median of 2 samples spread over the probe" in load_hardware_file(path).sources["gemm_curve_rows"]


def test_curve_samples_combine_by_median_over_the_rows_every_sample_measured():
    arch = PRESETS[CONFIG]
    reference = ReferenceTimes(1e-2, 3e-3)
    samples = [GemmCurveTimes(arch, 100, {1: 1.0, 2: 2.0, 4: 3.0}, [], [{1: 1.0, 2: 2.0, 4: 3.0}], [reference]),
               GemmCurveTimes(arch, 100, {1: 1.2, 2: 2.6, 4: 3.3}, [], [{1: 1.2, 2: 2.6, 4: 3.3}], [reference]),
               GemmCurveTimes(arch, 100, {1: 0.9, 2: 2.2}, [4], [{1: 0.9, 2: 2.2}], [reference])]  # fmt: skip
    curve = GemmCurveTimes.median_of(samples)
    assert curve.time_s == {1: 1.0, 2: 2.2}  # M = 4: the third sample found it too slow, so the curve stops at 2
    assert curve.skipped_rows == [4] and len(curve.sample_time_s) == 3 and len(curve.sample_references) == 3
    assert curve.spread_pct() == pytest.approx({1: 100 * 0.3 / 1.0, 2: 100 * 0.6 / 2.2})
    # The median's standard error: 1.2533 · 1.4826 · MAD / √3 over the median; M = 1: MAD of |0|, |0.2|, |0.1| = 0.1.
    assert curve.median_uncertainty_pct() == pytest.approx({1: 10.73, 2: 9.76}, abs=0.01)
    line = curve_spread_line(curve, settled_pct=3.0)
    assert "3, the median kept, its standard error at most 10.7% (M=1)" in line and "at most 30% (M=1)" in line
    assert "did not settle to 3%" in line and "moved while it was probed" in line
    assert "did not settle" not in curve_spread_line(curve, settled_pct=12.0)
    assert "1 (its spread over time not measured)" in curve_spread_line(samples[0], settled_pct=3.0)
    steady = GemmCurveTimes.median_of(samples[:1] * 2)
    assert steady.spread_pct() == {1: 0.0, 2: 0.0, 4: 0.0} and "moved" not in curve_spread_line(steady, 3.0)
    timings = [ReferenceTimes(1, 5), ReferenceTimes(3, 4), ReferenceTimes(2, 9)]
    assert ReferenceTimes.median_of(timings) == ReferenceTimes(2, 5)


def _curve_sample(arch, time_s: dict[int, float]) -> GemmCurveTimes:
    return GemmCurveTimes(arch, 100, time_s, [], [dict(time_s)], [ReferenceTimes(1e-2, 3e-3)])


def test_a_drifting_curve_is_sampled_again_until_its_median_settles():
    """Three samples that disagree at M = 1 (a slow spell caught two of them there, as on a shared VM): the probe
    takes more until every M's median is known to the target, and the median then comes from the typical state."""
    arch = PRESETS[CONFIG]
    samples = [_curve_sample(arch, {1: 1.0, 8: 1.42}), _curve_sample(arch, {1: 1.08, 8: 1.0}),
               _curve_sample(arch, {1: 0.75, 8: 1.02})]  # fmt: skip
    assert GemmCurveTimes.median_of(samples).median_uncertainty_pct()[1] > 3.0
    more = iter([{1: 0.76, 8: 1.01}, {1: 0.77, 8: 0.99}, {1: 0.76, 8: 1.0}, {1: 0.75, 8: 1.0}])
    curve = sample_until_settled(lambda: samples.append(_curve_sample(arch, next(more))), samples, 9, 3.0)
    assert len(samples) == len(curve.sample_time_s) == 5  # settled once two more agreed with the third
    assert max(curve.median_uncertainty_pct().values()) <= 3.0
    assert curve.time_s == pytest.approx({1: 0.76, 8: 1.01}, rel=0.02)
    # At most max_samples, however far the machine keeps moving; a settled curve takes none.
    moving = iter([0.8, 1.0, 1.2, 0.9, 1.1, 0.8, 1.0])
    wild = [_curve_sample(arch, {1: next(moving), 8: 2.0}) for _ in range(3)]
    unsettled = sample_until_settled(lambda: wild.append(_curve_sample(arch, {1: next(moving), 8: 2.0})), wild, 5, 3.0)
    assert len(wild) == 5 and max(unsettled.median_uncertainty_pct().values()) > 3.0
    steady = [_curve_sample(arch, {1: 1.0, 8: 2.0}) for _ in range(3)]
    sample_until_settled(lambda: pytest.fail("a settled curve takes no more samples"), steady, 9, 3.0)


def test_summary_names_every_figure(result):
    text = format_summary(result, "/x/local.toml")
    for needle in ("GFLOP/s", "GB/s", "weight stream", "GEMM curve", "M=1 ", "decode attention:", "GEMM curve samples:",
                   "GEMM shapes (2 N × 2 K, speed relative to the curve's model; 2 samples",
                   "µs per launch the perfmodel counts", "prefill attention:",
                   "Wrote local-cpu to /x/local.toml"):  # fmt: skip
        assert needle in text
    assert f"{result.matmuls[0].m}x{result.matmuls[0].n}x{result.matmuls[0].k}" in text


def test_summary_says_when_the_launch_cost_could_not_be_resolved(result):
    assert "too busy" not in format_summary(replace(result, launch_overhead_s=1e-5), "/x/local.toml")
    assert "too busy to resolve the launch cost" in format_summary(replace(result, launch_overhead_s=0.0), "/x/l.toml")


def test_cli_writes_an_entry_that_loads(probed):
    path, printed = probed
    hw = load_hardware_file(path)
    assert (hw.name, hw.measured, hw.peak_bf16_flops_per_s) == ("local-cpu", True, None)
    assert hw.peak_fp32_flops_per_s == pytest.approx(printed["peak_flops_per_s"])
    streaming = printed["streaming"]
    stream_rate = {int(m): streaming["weight_bytes"] / t for m, t in streaming["stream_time_s"].items()}
    bandwidth = max(printed["copy_bandwidth_bytes_per_s"], stream_rate[1])
    assert hw.hbm_bandwidth_bytes_per_s == pytest.approx(bandwidth)
    priors = hw.calibration_priors["torch"]
    assert (priors["compute_efficiency"], priors["calibrated"]) == (1.0, False)
    assert priors["memory_efficiency"] == pytest.approx(min(stream_rate[16] / bandwidth, 1))
    curve = printed["gemm_curve"]
    assert curve["arch"]["name"] == "tiny-gqa4" and curve["arch"]["dtype_bytes"] == 4  # --quick's, at float32
    assert (
        priors["gemm_curve_rows"] == tuple(float(m) for m in curve["time_s"]) == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    )
    assert priors["gemm_curve_factors"] == pytest.approx(printed["priors"]["gemm_curve_factors"])
    assert "gemm_half_efficiency_tokens" not in priors and "gemv_max_tokens" not in priors  # the curve replaces them
    attention = printed["attention"]  # the extra KV bytes of the longer prompt over the extra step time
    attention_rate = attention["kv_bytes_per_step"] / (attention["step_s"][1] - attention["step_s"][0])
    assert attention["step_s"][1] > attention["step_s"][0] > 0
    arch, (short, long) = attention["arch"], attention["kv_lens"]  # K and V of every layer, fp32, per sequence
    kv_bytes = arch["n_layer"] * attention["batch"] * (long - short) * 2 * arch["n_kv_head"] * arch["d_head"] * 4
    assert attention["kv_bytes_per_step"] == kv_bytes
    assert priors["attention_decode_memory_efficiency"] == pytest.approx(min(attention_rate / bandwidth, 1.0))
    prefill = printed["prefill_attention"]  # one layer of tiny-gqa4's causal attention: 2·B·hq·dh·T² FLOPs
    arch, batch, length = prefill["arch"], prefill["batch"], prefill["input_len"]
    assert arch["name"] == "tiny-gqa4" and (batch, length) == (2, 64)  # --quick's forward
    rate = 2 * batch * arch["n_head"] * arch["d_head"] * length**2 / prefill["layer_s"]
    assert priors["attention_prefill_compute_efficiency"] == pytest.approx(min(rate / hw.peak_fp32_flops_per_s, 1))
    assert priors["kernel_launch_overhead_s"] == pytest.approx(printed["engine"]["launch_overhead_s"])
    assert priors["step_overhead_s"] == pytest.approx(printed["step_overhead_s"])
    assert (priors["gpu_memory_utilization"], priors["workspace_bytes"]) == (0.5, 256 * 2**20)
    for figure in ("hbm_bandwidth_bytes_per_s", "peak_fp32_flops_per_s", "kernel_launch_overhead_s", "step_overhead_s",
                   "memory_efficiency", "gemm_curve_rows", "gemm_curve_factors",
                   "attention_decode_memory_efficiency", "attention_prefill_compute_efficiency"):  # fmt: skip
        assert hw.sources[figure].startswith("measured by archscale probe:")
    assert "memory_bytes" in hw.sources and "gpu_memory_utilization" in hw.sources
    assert hw.metadata["cpu_model"] and "gpu_name" not in hw.metadata  # None values are left out
    assert [p.name for p in path.parent.iterdir()] == ["local.toml"]  # no temporary file left behind


def test_predict_on_the_probed_entry(capsys, probed):
    path, _ = probed
    code, out, err = run_cli(capsys, "predict", CONFIG, "--hardware", path, "--dtype", "float32", *PREDICT)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["batch_size"] for r in rows] == [1, 4]
    assert all(r["calibrated"] is False and r["gpu"] == "local-cpu" and r["hardware_measured"] for r in rows)
    assert all(r["dtype_bytes"] == 4 and r["output_tokens_per_s"] > 0 for r in rows)
    code, out, _ = run_cli(capsys, "predict", CONFIG, "--hardware", path, "--dtype", "float32", *PREDICT[:-1])
    assert code == 0 and "local-cpu" in out and "measured by archscale probe" in out


def test_bf16_arch_on_an_fp32_probe_is_one_line(capsys, probed):
    code, _, err = run_cli(capsys, "predict", CONFIG, "--hardware", probed[0], *PREDICT)
    assert code == 2 and "peak_bf16_flops_per_s" in err and "--dtype float32" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_gpu_local_reads_the_default_probe_file(capsys, probed, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, _, err = run_cli(capsys, "predict", CONFIG, "--gpu", "local", "--dtype", "float32", *PREDICT)
    assert code == 2 and "no probe of this machine yet: run `archscale probe`" in err
    (tmp_path / "archscale").mkdir()
    shutil.copy(probed[0], tmp_path / "archscale" / "local.toml")
    code, out, err = run_cli(capsys, "predict", CONFIG, "--gpu", "local", "--dtype", "float32", *PREDICT)
    assert code == 0 and json.loads(out)[0]["gpu"] == "local-cpu", err


def test_default_out_respects_xdg_cache_home(result, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert write_hardware_file(result) == tmp_path / "archscale" / "local.toml"
    assert load_hardware_file(tmp_path / "archscale" / "local.toml").name == "local-cpu"


def test_toml_values_round_trip():
    tricky = 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f µs'
    text = "\n".join(f"k{i} = {toml_value(v)}" for i, v in enumerate([tricky, 1.5e-06, 3e12, 7, True, ["a", "b"]]))
    assert list(tomllib.loads(text).values()) == [tricky, 1.5e-06, 3e12, 7, True, ["a", "b"]]
    with pytest.raises(ValueError):
        toml_value(float("nan"))


def test_a_cuda_entry_has_gpu_priors(tmp_path):
    """The CUDA branch of the writer, without a GPU: a hand-made result as a CUDA probe would return it."""
    name = "local-" + slug("NVIDIA H100 80GB HBM3")
    assert name == "local-nvidia-h100-80gb-hbm3"
    engine = EngineOverheads(5e-6, 4e-5, {2: 2.1e-4, 8: 6.3e-4})
    gib = 2**30  # 1 GiB bf16 weight: GEMV at 3.0 TB/s, M = 16 at 2.6 TB/s
    streaming = WeightStreaming(gib, {1: gib / 3.0e12, 2: gib / 3.0e12, 4: gib / 2.9e12, 8: gib / 2.7e12,
                                      16: gib / 2.6e12})  # fmt: skip
    arch = replace(PRESETS["llama-3.2-1b"], dtype_bytes=2)
    # llama-3.2-1b's GEMMs: M = 1 at 1.1x its roofline at the priors, M = 4096 at 0.9x (the peak is the matmul's)
    peak = 2 * 8192**3 / 1.5e-3
    roofline = {m: float(gemm_roofline_s(arch, m, peak, 2.6e12)) for m in (1, 4096)}
    curve = GemmCurveTimes(arch, 2_400_000_000, {1: roofline[1] / 1.1, 4096: roofline[4096] / 0.9}, [8192])
    # decode attention: 1 GiB more KV cache per step at the long context, read in 0.5 ms more: 2.15 TB/s
    attention = DecodeAttention(arch, 64, (1024, 8192), (1.0e-3, 1.5e-3), float(gib))
    # the shape grid: every shape at 1.3x its roofline, so every shape runs as fast as llama-3.2-1b's GEMMs: factor 1
    m, n, k = np.meshgrid((1, 8), (1024, 4096), (1024, 2048), indexing="ij")
    grid_s = single_gemm_roofline_s(m, n, k, 2, peak, 2.6e12) / 1.3
    grid = GemmShapeTimes((1, 8), (1024, 4096), (1024, 2048), grid_s, 2, 256 * 2**20, 5)
    fake = ProbeResult(name, "NVIDIA H100 80GB HBM3", "cuda", "bfloat16", False,
                       [MatmulResult(8192, 8192, 8192, 2 * 8192**3, 1.5e-3, 2 * 8192**3 / 1.5e-3, 30)], [],
                       peak, 2**30, 2.9e12, 5e-6, 4e-5, engine, streaming, curve, grid,
                       attention, ReferenceTimes(gemm_s=2e-4, stream_s=3e-4), 85_000_000_000, 132, 3, 7, None,
                       {"gpu_name": "NVIDIA H100 80GB HBM3"})  # fmt: skip
    hw = load_hardware_file(write_hardware_file(fake, tmp_path / "gpu.toml"))
    assert (hw.name, hw.peak_bf16_flops_per_s, hw.peak_fp32_flops_per_s) == (name, fake.peak_flops_per_s, None)
    priors = hw.calibration_priors["torch"]
    assert (priors["gpu_memory_utilization"], priors["workspace_bytes"]) == (0.9, 2 * 2**30)
    # the bandwidth is the faster of copy (2.9 TB/s) and the GEMV stream (3.0 TB/s); priors relative to it
    assert hw.hbm_bandwidth_bytes_per_s == pytest.approx(3.0e12)
    assert priors["memory_efficiency"] == pytest.approx(2.6 / 3.0)
    assert priors["attention_decode_memory_efficiency"] == pytest.approx(gib / 0.5e-3 / 3.0e12)
    assert priors["gemm_curve_rows"] == (1.0, 4096.0) and priors["gemm_curve_factors"] == pytest.approx((1.1, 0.9))
    assert "llama-3.2-1b" in hw.sources["gemm_curve_rows"] and "M >= 8192 skipped" in hw.sources["gemm_curve_factors"]
    assert priors["gemm_shape_n"] == (1024.0, 4096.0) and np.allclose(priors["gemm_shape_factors"], 1.0)
    assert "llama-3.2-1b's GEMMs" in hw.sources["gemm_shape_factors"]
    assert "multi_processor_count" in hw.sources["sm_count"] and "8192x8192x8192" in hardware_toml(fake)
    assert hw.machine_reference == (2e-4, 3e-4)  # the state `compare --drift-correct` brings measurements to


def test_the_priors_predict_the_probes_own_gemms(result):
    """The curve is defined so that the perfmodel's roofline at the probe's priors gives back each measured pass over
    the GEMMs: the estimator's own GEMM operators (perfmodel.operators) for the timed architecture, M tokens each
    through the LM head, on the probed entry, predict the measured time. The shape grid beside it keeps that at each
    of its own M (the grid is relative to the curve's model); beyond them it holds its largest M's factors."""
    from harness.probe.entry import bandwidth_bytes_per_s, calibration_priors
    from perfmodel.arch_batch import ArchBatch
    from perfmodel.calibration import Calibration
    from perfmodel.operators import dense_ops
    from perfmodel.parallel import shard
    from perfmodel.roofline import roofline

    curve, with_grid = result.gemm_curve, Calibration(**calibration_priors(result))
    cal = replace(with_grid, gemm_shape_rows=(), gemm_shape_n=(), gemm_shape_k=(), gemm_shape_factors=())
    hw = type("Hw", (), {"hbm_bandwidth_bytes_per_s": bandwidth_bytes_per_s(result)})()
    shape = shard(ArchBatch.from_archs([curve.arch]), 1)

    def predicted_s(rows, calibration):
        ops = dense_ops(shape, np.float64(rows), np.float64(rows), 1.0)
        return np.asarray(sum(roofline(ops[name], hw, calibration, result.peak_flops_per_s)[0] - ops[name].kernels
                              * calibration.kernel_launch_overhead_s for name in GEMM_OPS)).item()  # fmt: skip

    for rows, measured_s in curve.time_s.items():
        assert predicted_s(rows, cal) == pytest.approx(measured_s, rel=1e-9)
    assert set(result.gemm_shapes.rows) < set(curve.time_s)
    for rows in result.gemm_shapes.rows:
        assert predicted_s(rows, with_grid) == pytest.approx(curve.time_s[rows], rel=1e-9)
    # between measured M the factor is interpolated in log M: M = 3 lies between M = 2 and M = 4
    f2, f4 = cal.gemm_curve_factor(2.0), cal.gemm_curve_factor(4.0)
    assert cal.gemm_curve_factor(3.0) == pytest.approx(f2 * (f4 / f2) ** (np.log(1.5) / np.log(2)))
    assert cal.gemm_curve_factor(10_000.0) == pytest.approx(cal.gemm_curve_factors[-1])  # beyond: the last one


def test_the_prefill_attention_prior_gives_back_the_measured_time():
    """The perfmodel's prefill-attention operator (one layer, at the probe's peak and its prior) takes the time the
    probe measured, where the operator is compute-bound, as prefill attention over a prompt is."""
    from harness.probe.prefill_attention import PrefillAttentionTimes
    from perfmodel.calibration import Calibration
    from perfmodel.operators import prefill_attention
    from perfmodel.roofline import roofline

    arch = replace(PRESETS["llama-3.2-1b"], dtype_bytes=2, n_layer=1)
    peak, layer_s = 8.0e14, 2.5e-3  # a H100-like peak; 4 prompts of 2048 tokens in 2.5 ms
    measured = PrefillAttentionTimes(arch, 4, 2048, layer_s)
    efficiency = measured.efficiency(peak)
    assert efficiency == pytest.approx(2 * 4 * 32 * 64 * 2048**2 / layer_s / peak)  # 2·B·hq·dh·T², llama-3.2-1b
    cal = Calibration(compute_efficiency=1.0, memory_efficiency=1.0, kernel_launch_overhead_s=0.0, step_overhead_s=0.0,
                      gpu_memory_utilization=0.9, workspace_bytes=0, calibrated=False,
                      attention_prefill_compute_efficiency=efficiency)  # fmt: skip
    from harness.probe.decode import one_gpu_shape

    op = prefill_attention(one_gpu_shape(arch), 4, 2048, 2)
    hw = type("Hw", (), {"hbm_bandwidth_bytes_per_s": 3.0e12})()
    time_s, compute_bound = roofline(op, hw, cal, peak)
    assert bool(np.asarray(compute_bound).item()) and np.asarray(time_s).item() == pytest.approx(layer_s)
    assert PrefillAttentionTimes(arch, 4, 2048, 1e-9).efficiency(peak) == 1.0  # never above the peak


def test_a_bad_gemm_config_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "probe", "--device", "cpu", "--quick", "--gemm-config", "small-bse",
                           "--out", tmp_path / "x.toml")  # fmt: skip
    assert code == 2 and "did you mean: small-base" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.toml").exists()


def test_gpus_lists_a_probed_file(capsys, probed):
    code, out, _ = run_cli(capsys, "gpus", "--hardware", probed[0])
    assert code == 0 and "local-cpu (measured)" in out and "h200" in out


def test_unwritable_out_is_a_user_error(result, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArchscaleInputError, match="cannot write"):
        write_hardware_file(result, blocker / "sub" / "local.toml")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "probe", "--device", "cuda", "--quick", "--out", tmp_path / "x.toml")
    assert code == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1


@pytest.mark.gpu
def test_probe_on_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    gpu = probe("cuda", "bfloat16", quick=True)
    assert gpu.name.startswith("local-") and gpu.sm_count == torch.cuda.get_device_properties(0).multi_processor_count
    assert gpu.peak_flops_per_s > 1e12 and gpu.copy_bandwidth_bytes_per_s > 1e11
    hw = load_hardware_file(write_hardware_file(gpu, tmp_path / "gpu.toml"))
    assert hw.peak_bf16_flops_per_s == pytest.approx(gpu.peak_flops_per_s)
    assert hw.calibration_priors["torch"]["gpu_memory_utilization"] == 0.9


def test_launches_per_step_are_counted_as_the_perfmodel_charges_them():
    """Per layer: qkv, o, 3 MLP, 2 norms, 2 attention (rotary+append, decode); plus final norm, embedding, LM head
    and the greedy sampler (cast to fp32, argmax)."""
    from harness.probe.decode import _tiny_arch, perfmodel_launches_per_step

    assert [perfmodel_launches_per_step(_tiny_arch(depth)) for depth in (2, 8)] == [9 * 2 + 5, 9 * 8 + 5]


def test_engine_overheads_measure_again_when_the_deeper_model_is_not_slower(monkeypatch):
    """A busy machine can time the 8-layer tiny model no slower than the 2-layer one: that pair says nothing of the
    launch cost, so both are measured again and the first pair that resolves it is used."""
    import harness.probe.decode as probe_decode

    times = iter([2.0e-3, 1.9e-3, 1.0e-3, 3.0e-3])  # (2 layers, 8 layers) twice: unresolved, then resolved
    monkeypatch.setattr(probe_decode, "decode_step_s", lambda arch, *args: next(times))
    overheads = probe_decode.engine_overheads("cpu", "float32")
    assert overheads.step_s_by_depth == {2: 1.0e-3, 8: 3.0e-3} and overheads.launch_overhead_s > 0
