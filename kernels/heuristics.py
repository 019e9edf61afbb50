"""How many KV splits a decode launch should use (split-KV / flash-decoding).

A stage-1 program handles one (sequence, KV head, split). With batch × num_kv_heads programs alone, a small
batch leaves most SMs idle while one program streams a whole long context; splitting the sequence multiplies
the programs. We aim for about two waves of programs over the SMs, never split below MIN_TOKENS_PER_SPLIT
tokens (each split re-reads q and writes a partial output, so tiny splits cost more than they hide), and cap
the splits so the merge stays cheap.
"""

from __future__ import annotations

import math

WAVES_TARGET = 2
MIN_TOKENS_PER_SPLIT = 256
MAX_SPLITS = 64


def choose_num_splits(batch: int, num_kv_heads: int, max_kv_len: int, sm_count: int) -> int:
    programs = max(batch * num_kv_heads, 1)
    wanted = math.ceil(WAVES_TARGET * sm_count / programs)
    affordable = max(1, max_kv_len // MIN_TOKENS_PER_SPLIT)
    return max(1, min(wanted, affordable, MAX_SPLITS))
