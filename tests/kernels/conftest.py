"""Kernel tests run on the CPU under the Triton interpreter when no CUDA GPU is present (tests/conftest.py sets
TRITON_INTERPRET before any kernel is imported); `device` is where their tensors live."""

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"


@pytest.fixture(scope="session")
def device():
    return DEVICE
