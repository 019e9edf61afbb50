"""Kernel tests run on the CPU under the Triton interpreter when no CUDA GPU is present.

TRITON_INTERPRET must be set before `triton.jit` decorates the kernels, i.e. before kernels.gqa_decode is
imported: this conftest is loaded first.
"""

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if HAS_CUDA else "cpu"


@pytest.fixture(scope="session")
def device():
    return DEVICE
