"""Suite-wide setup: without a CUDA GPU, Triton kernels run in Triton's interpreter on CPU tensors.

TRITON_INTERPRET must be set before `triton.jit` decorates a kernel, i.e. before any test module (kernels or the
engine's Triton attention path) imports kernels.gqa_decode: the root conftest is loaded before all of them.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def write_probed_hardware(tmp_path):
    """Writes a hardware entry in the format `archscale probe` writes (a measured CPU with torch-engine priors) and
    returns its path; the keyword arguments set the machine's figures."""
    from harness.toml_io import dumps

    def write(name="local-cpu", *, display_name="Toy CPU, 2 logical CPUs", bandwidth=2.0e10, peak_fp32=5.0e10,
              memory_bytes=16_000_000_000, launch_s=3e-6, step_s=4e-5, gemm_curve=None,
              machine_reference=None):  # fmt: skip
        priors = {"compute_efficiency": 1.0, "memory_efficiency": 1.0, "kernel_launch_overhead_s": launch_s,
                  "step_overhead_s": step_s, "gpu_memory_utilization": 0.5, "workspace_bytes": 268435456,
                  "calibrated": False}  # fmt: skip
        if gemm_curve is not None:  # {rows: factor}, as the probe measures it
            priors |= {"gemm_curve_rows": list(gemm_curve), "gemm_curve_factors": list(gemm_curve.values())}
        entry = {"display_name": display_name, "measured": True, "hbm_bandwidth_bytes_per_s": bandwidth,
                 "peak_fp32_flops_per_s": peak_fp32, "memory_bytes": memory_bytes, "sm_count": 2,
                 "calibration": {"torch": priors}}  # fmt: skip
        if machine_reference is not None:  # (gemm_s, stream_s) at the probe
            entry["machine_reference"] = dict(zip(("gemm_s", "stream_s"), machine_reference, strict=True))
        path = tmp_path / f"{name}.toml"
        path.write_text(dumps({name: entry}))
        return path

    return write
