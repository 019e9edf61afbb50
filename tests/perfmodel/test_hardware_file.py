"""Hardware entries: files in hardware.toml's format (as `archscale probe` writes them) load with one-line errors,
the peak FLOP rate follows the architecture's dtype, and a hardware's own calibration priors come first."""

import numpy as np
import pytest

from perfmodel import PRESETS, Arch, ArchBatch, ArchscaleInputError, Calibration, Hardware, estimate, get_gpu, predict
from perfmodel.calibration import engine_priors, get_calibration
from perfmodel.hardware import default_probe_path, load_hardware_file, resolve_hardware

PROBED = """\
# written by hand in the probe's format
[local-cpu]
display_name = "Test CPU, 2 logical CPUs"
measured = true
hbm_bandwidth_bytes_per_s = 2.0e10
peak_fp32_flops_per_s = 5.0e10
memory_bytes = 16000000000
sm_count = 2

[local-cpu.sources]
hbm_bandwidth_bytes_per_s = "measured by archscale probe: copy"

[local-cpu.calibration.torch]
compute_efficiency = 1.0
memory_efficiency = 1.0
kernel_launch_overhead_s = 3e-6
step_overhead_s = 4e-5
gpu_memory_utilization = 0.5
workspace_bytes = 268435456
calibrated = false

[local-cpu.metadata]
hostname = "test"
"""


def write(tmp_path, text, name="hw.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path, text) -> str:
    with pytest.raises(ArchscaleInputError) as exc_info:
        load_hardware_file(write(tmp_path, text))
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_probed_file_loads_with_its_priors(tmp_path):
    hw = load_hardware_file(write(tmp_path, PROBED))
    assert (hw.name, hw.measured, hw.sm_count) == ("local-cpu", True, 2)
    assert hw.peak_fp32_flops_per_s == 5e10 and hw.peak_bf16_flops_per_s is None
    assert hw.calibration_priors["torch"]["step_overhead_s"] == 4e-5 and hw.metadata == {"hostname": "test"}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("sm_count = 2\n", "sm_count = 2\nsm_count = [\n", "malformed TOML"),
        ("hbm_bandwidth_bytes_per_s = 2.0e10\n", "", "missing required field hbm_bandwidth_bytes_per_s"),
        ("hbm_bandwidth_bytes_per_s = 2.0e10", "hbm_bandwidth_bytes_per_s = -2.0e10", "must be a positive"),
        ("hbm_bandwidth_bytes_per_s = 2.0e10", 'hbm_bandwidth_bytes_per_s = "fast"', "must be a number"),
        ("memory_bytes = 16000000000", "memory_bytes = 0", "must be a positive"),
        ("sm_count = 2", "sm_count = 2.5", "sm_count must be a positive integer"),
        ("sm_count = 2", "sm_count = 2\nhbm_speed = 3", "unknown key(s) hbm_speed"),
        ("peak_fp32_flops_per_s = 5.0e10\n", "", "at least one of"),
        ("measured = true", 'measured = "yes"', "measured must be true or false"),
        ("[local-cpu.calibration.torch]", "[local-cpu.calibration.trt]", "unknown engine 'trt'"),
        ("step_overhead_s = 4e-5\n", "", "missing step_overhead_s"),
        ("compute_efficiency = 1.0", "compute_efficiency = 1.5", "must be in (0, 1]"),
        ("kernel_launch_overhead_s = 3e-6", "kernel_launch_overhead_s = -3e-6", "non-negative"),
        ("step_overhead_s = 4e-5", "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]", "needs gemm_curve_factors"),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [1.5]",
            "gemm_curve_rows has 2 values, gemm_curve_factors 1",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [4, 2]\ngemm_curve_factors = [1, 1]",
            "must increase strictly from at least 1",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [1, 0]",
            "gemm_curve_factors must be a non-empty array of positive numbers",
        ),
        (
            "step_overhead_s = 4e-5",
            'step_overhead_s = 4e-5\ngemm_curve_rows = "1"\ngemm_curve_factors = [1]',
            "gemm_curve_rows must be a non-empty array",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [2, 1]\ngemm_shape_rows = [1]\ngemm_shape_n = [512]",
            "gemm_shape_rows needs gemm_shape_k, gemm_shape_factors beside it",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [2, 1]\ngemm_shape_rows = [1]\ngemm_shape_n = [512, 2048]\ngemm_shape_k = [512]\n"
            "gemm_shape_factors = [[1.0, 1.0]]",
            "gemm_shape_factors must be an array of positive numbers shaped [rows][n][k] = [1, 2, 1]",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [2, 1]\ngemm_shape_rows = [1]\ngemm_shape_n = [2048, 512]\ngemm_shape_k = [512]\n"
            "gemm_shape_factors = [[[1.0], [1.0]]]",
            "gemm_shape_n must increase strictly",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_curve_rows = [1, 2]\ngemm_curve_factors = [2, 1]\ngemm_shape_rows = [1]\ngemm_shape_n = [512]\ngemm_shape_k = [512]\ngemm_shape_factors = [[[0.0]]]",
            "gemm_shape_factors must be an array of positive numbers",
        ),
        (
            "step_overhead_s = 4e-5",
            "step_overhead_s = 4e-5\ngemm_shape_rows = [1]\ngemm_shape_n = [512]\ngemm_shape_k = [512]\n"
            "gemm_shape_factors = [[[1.0]]]",
            "the GEMM shape grid (gemm_shape_*) is relative to a GEMM curve",
        ),
    ],
)
def test_bad_fields_are_one_line_errors(tmp_path, old, new, message):
    assert old in PROBED
    assert message in load_error(tmp_path, PROBED.replace(old, new, 1))


def test_malformed_toml_names_the_line(tmp_path):
    assert "line 3" in load_error(tmp_path, '[x]\ndisplay_name = "a"\nsm_count = = 2\n')


def test_missing_file_empty_file_and_several_tables(tmp_path):
    with pytest.raises(ArchscaleInputError, match="does not exist"):
        load_hardware_file(tmp_path / "nope.toml")
    assert "no hardware table" in load_error(tmp_path, "# nothing\n")
    two = PROBED + PROBED.replace("[local-cpu", "[other-cpu")
    assert "holds 2 hardware tables" in load_error(tmp_path, two)
    assert load_hardware_file(write(tmp_path, two), name="other-cpu").name == "other-cpu"
    with pytest.raises(ArchscaleInputError, match=r"no hardware table \[third\]"):
        load_hardware_file(write(tmp_path, two), name="third")


def test_resolve_hardware(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_probe_path() == tmp_path / "cache" / "archscale" / "local.toml"
    with pytest.raises(ArchscaleInputError, match="no probe of this machine yet: run `archscale probe`"):
        resolve_hardware("local", None)
    default_probe_path().parent.mkdir(parents=True)
    default_probe_path().write_text(PROBED)
    assert resolve_hardware("local", None).name == "local-cpu"
    assert resolve_hardware(None, write(tmp_path, PROBED)).measured
    assert resolve_hardware("h200", None) == get_gpu("h200")
    with pytest.raises(ArchscaleInputError, match="not both"):
        resolve_hardware("h200", tmp_path / "hw.toml")
    with pytest.raises(ArchscaleInputError, match="name the hardware"):
        resolve_hardware(None, None)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the XDG spec says
    assert default_probe_path().parts[-3:] == (".cache", "archscale", "local.toml")


def test_datasheet_fp32_peaks_cite_their_source():
    for name, tflops in (("a100-40gb", 19.5), ("a100-80gb", 19.5), ("h100-sxm", 67), ("h100-pcie", 51), ("h200", 67)):
        gpu = get_gpu(name)
        assert gpu.peak_fp32_flops_per_s == tflops * 1e12 and "FP32" in gpu.sources["peak_fp32_flops_per_s"]
    assert get_gpu("b200").peak_fp32_flops_per_s is None  # not stated where we could cite it: left out


TOY = Hardware("toy", "Toy GPU", hbm_bandwidth_bytes_per_s=1e18, peak_bf16_flops_per_s=1e14, peak_fp16_flops_per_s=1e14,
               memory_bytes=1e12, sm_count=1, peak_fp32_flops_per_s=1e12)  # fmt: skip
IDEAL = Calibration(1.0, 1.0, 0.0, 0.0, 1.0, 0, False)
TINY = Arch(d_model=64, n_layer=2, n_head=4, n_kv_head=2, d_head=16, d_ff=128, vocab=1000, dtype_bytes=4)


def test_peak_follows_the_dtype_scalar_and_array():
    assert TOY.peak_flops_per_s(4) == 1e12 and TOY.peak_flops_per_s(2) == 1e14 and TOY.peak_flops_per_s(1) == 1e14
    assert TOY.peak_flops_per_s(np.full((3, 1), 4)) == 1e12  # uniform arrays give one float
    np.testing.assert_array_equal(TOY.peak_flops_per_s(np.array([[4], [2], [1]])), [[1e12], [1e14], [1e14]])
    fp16_only = Hardware("f", "F", 1e12, None, 5e13, 1e12, 1)
    assert fp16_only.peak_flops_per_s(2) == 5e13  # 2 bytes: bf16, else fp16 (the model cannot tell them apart)


def test_missing_peaks_are_clear_errors():
    with pytest.raises(
        ArchscaleInputError, match=r"B200-SXM-180GB \(b200\) has no fp32 peak \(peak_fp32_flops_per_s\)"
    ):
        predict(TINY, get_gpu("b200"), batch_size=1, input_len=8, output_len=2)
    fp32_only = Hardware("local-cpu", "CPU", 1e10, None, None, 1e10, 2, peak_fp32_flops_per_s=1e10, measured=True)
    with pytest.raises(ArchscaleInputError, match=r"no bf16 peak \(peak_bf16_flops_per_s\).*--dtype float32"):
        fp32_only.peak_flops_per_s(np.array([2, 2]))


def test_estimator_uses_the_fp32_peak_for_4_byte_archs():
    """Prefill of 4 x 256 tokens is compute-bound on TOY; the MLP's time is its FLOPs over the dtype's peak."""
    tokens = 4 * 256
    mlp_flops = TINY.n_layer * 2 * tokens * 3 * TINY.d_model * TINY.d_ff  # gate, up and down GEMMs
    bf16 = Arch(**{**TINY.__dict__, "dtype_bytes": 2})
    both = estimate(ArchBatch.from_archs([TINY, bf16]), TOY, batch_size=4, input_len=256, output_len=2,
                    calibration=IDEAL)  # fmt: skip
    np.testing.assert_allclose(both.prefill_op_time_s["mlp"], [mlp_flops / 1e12, mlp_flops / 1e14], rtol=1e-12)
    alone = estimate(ArchBatch.from_archs([TINY]), TOY, batch_size=4, input_len=256, output_len=2, calibration=IDEAL)
    assert alone.prefill_op_time_s["mlp"][0] == pytest.approx(mlp_flops / 1e12, rel=1e-12)
    assert bool(alone.prefill_compute_bound[0])


def test_calibration_prefers_the_hardwares_own_priors(tmp_path):
    hw = load_hardware_file(write(tmp_path, PROBED))
    own = get_calibration(hw, "torch")
    assert (own.compute_efficiency, own.step_overhead_s, own.gpu_memory_utilization) == (1.0, 4e-5, 0.5)
    # no vllm priors in the file: the package's defaults (A100-class, no GPU-specific table for a probed machine),
    # not the A100's fit to published throughputs (perfmodel/data/published_calibration.toml)
    assert get_calibration(hw, "vllm") == get_calibration("local-cpu", "vllm") == engine_priors("a100-80gb", "vllm")
    assert not get_calibration(hw, "vllm").calibrated
    assert get_calibration(get_gpu("h200"), "torch") == get_calibration("h200", "torch")  # names still work
    p = predict(PRESETS["qwen3-0.6b"], get_gpu("h200"), batch_size=1, input_len=8, output_len=2)
    assert p.to_dict()["calibrated"] is False and p.to_dict()["hardware_measured"] is False
