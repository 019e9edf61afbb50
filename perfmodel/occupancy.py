"""Occupancy of decode attention: how much of the GPU a split-KV decode kernel can keep busy.

A decode-attention launch runs one program per (sequence, KV head, KV split) (kernels/gqa_decode.py; FlashInfer and
flash-decoding work the same way). A program runs on one SM, so with fewer programs than SMs the idle SMs pull no
bytes and the kernel reaches only programs / SMs of the bandwidth a full GPU would; split-KV exists to avoid that.
The number of splits is chosen per batch shape by the kernel's heuristic, mirrored here in numpy so the estimator
stays vectorized (tests/perfmodel/test_occupancy.py checks it equals `kernels.heuristics.choose_num_splits`):
aim for WAVES_TARGET waves of programs, never below MIN_TOKENS_PER_SPLIT tokens per split, at most MAX_SPLITS.
The plan is made once per wave for the longest KV length it will reach (input + output), so the occupancy is one
number for every decode step of the wave.

occupancy = min(1, batch · num_kv_heads · num_splits / sm_count), in (0, 1].
On a CPU (sm_count = threads) a handful of programs fills every core: the occupancy is 1 in practice.
"""

from __future__ import annotations

import numpy as np

# The kernel's heuristic constants (kernels/heuristics.py): a test keeps the two in step.
WAVES_TARGET = 2
MIN_TOKENS_PER_SPLIT = 256
MAX_SPLITS = 64


def num_kv_splits(batch, num_kv_heads, max_kv_len, sm_count):
    """KV splits per (sequence, KV head) that the decode kernel plans; broadcasts over its arguments."""
    programs = np.maximum(np.asarray(batch) * np.asarray(num_kv_heads), 1)
    wanted = np.ceil(WAVES_TARGET * sm_count / programs)
    affordable = np.maximum(1, np.asarray(max_kv_len) // MIN_TOKENS_PER_SPLIT)
    return np.maximum(1, np.minimum(np.minimum(wanted, affordable), MAX_SPLITS))


def decode_attention_occupancy(batch, num_kv_heads, max_kv_len, sm_count):
    """Share of the SMs the decode-attention launch keeps busy, in (0, 1]."""
    programs = np.asarray(batch) * np.asarray(num_kv_heads) * num_kv_splits(batch, num_kv_heads, max_kv_len, sm_count)
    return np.minimum(1.0, programs / sm_count)
