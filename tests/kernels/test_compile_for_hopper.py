"""The kernels compile for sm_90 (H100/H200) through Triton's real pipeline, with no GPU: the interpreter used by
the other CPU tests does not check what only the compiler checks."""

import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the gpu-marked tests compile and run the kernels")
def test_every_kernel_variant_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run([sys.executable, "-m", "kernels.compile_check", "90"], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = [line.removeprefix("compiled ") for line in done.stdout.splitlines() if line.startswith("compiled")]
    # 3 dtypes x 2 head dims x 2 stride widths x (contiguous, paged) x (split, single split) + the merge
    assert len(compiled) == len(set(compiled)) == 3 * 2 * 2 * (2 * 2 + 1)
    for dtype in ("bf16", "fp16", "fp32"):
        for strides in ("i32", "i64"):
            for paged in (False, True):
                assert f"split_kv {dtype} head_dim=128 paged={paged} single_split=True strides={strides}" in compiled
            assert f"merge {dtype} head_dim=64 strides={strides}" in compiled
