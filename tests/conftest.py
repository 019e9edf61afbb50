"""Suite-wide setup: without a CUDA GPU, Triton kernels run in Triton's interpreter on CPU tensors.

TRITON_INTERPRET must be set before `triton.jit` decorates a kernel, i.e. before any test module (kernels or the
engine's Triton attention path) imports kernels.gqa_decode: the root conftest is loaded before all of them.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
